package client_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"log"
	"os"
	"os/signal"

	"github.com/syncpoint/syncpoint/client"
)

// An app that keeps chat messages in its own table of the SDK's database:
// each message is inserted in the transaction that records it as applied,
// so it is stored exactly once even if the app is killed at any moment.
func Example() {
	c, err := client.Open(client.Config{
		Server:     "http://127.0.0.1:7420",
		Token:      os.Getenv("DEVICE_TOKEN"),
		DeviceID:   "phone-1",
		Platform:   "android",
		AppVersion: "2.3.0",
		Bizzes:     []string{"chat", "config"},
		DBPath:     "app.db",
		Handler: func(tx *sql.Tx, batch []client.Entry) error {
			for _, e := range batch {
				if e.Op != "msg" {
					continue // put and delete entries are kept by the SDK: see Get and List
				}
				if _, err := tx.Exec(`INSERT INTO messages (channel, seq, body) VALUES (?, ?, ?)`, e.Channel, e.Seq, string(e.Data)); err != nil {
					return err // rolled back; the entries come again
				}
			}
			return nil
		},
		OnReset: func(channel string) { log.Printf("%s was reset; drop what the app derived from it", channel) },
		OnGap:   func(channel string, firstSeq uint64) { log.Printf("%s: entries before %d are gone", channel, firstSeq) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.DB().Exec(`CREATE TABLE IF NOT EXISTS messages (channel TEXT, seq INTEGER, body TEXT)`); err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := c.Run(ctx); err != nil {
		log.Fatal(err) // a refused token, a forbidden biz...: reconnecting would not help
	}
}

// An app that edits notes offline: Put shows the change locally at once and
// queues it; the server's answer comes back through the callbacks.
func ExampleClient_Put() {
	c, err := client.Open(client.Config{
		Server:   "http://127.0.0.1:7420",
		Token:    os.Getenv("DEVICE_TOKEN"),
		DeviceID: "phone-1",
		Bizzes:   []string{"notes"},
		DBPath:   "app.db",
		OnConflict: func(cf client.Conflict) {
			// The local note is already the server's (cf.Current); offer the
			// user their version, cf.Data, to apply again with Put.
			log.Printf("note %s changed elsewhere: %s", cf.ID, cf.Message)
		},
		OnWriteError: func(we client.WriteError) { log.Printf("note %s refused: %s %s", we.ID, we.Code, we.Message) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	go c.Run(ctx)
	if err := c.Put(ctx, "notes", "01HZX5N0010000000000000000", json.RawMessage(`{"title":"groceries"}`)); err != nil {
		log.Print(err) // not a JSON value, too large, or the biz's channel is not known yet
	}
	note, _, _ := c.GetBiz(ctx, "notes", "01HZX5N0010000000000000000")
	log.Printf("note: %s; %d changes not yet confirmed", note, c.Pending())
}
