package client_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint/client"
)

// The helper process reads its setup from these variables.
const (
	helperEnv       = "SYNCPOINT_CLIENT_HELPER"
	helperServerEnv = "SYNCPOINT_CLIENT_HELPER_SERVER"
	helperTokenEnv  = "SYNCPOINT_CLIENT_HELPER_TOKEN"
	helperDBEnv     = "SYNCPOINT_CLIENT_HELPER_DB"
)

// TestHelperClientProcess is not a test on its own: it is the app process
// that TestExactlyOnceAcrossProcessKills starts and kills. Its Handler
// writes every entry into an app table inside the SDK's transaction.
func TestHelperClientProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("started by TestExactlyOnceAcrossProcessKills")
	}
	c, err := client.Open(client.Config{
		Server:     os.Getenv(helperServerEnv),
		Token:      os.Getenv(helperTokenEnv),
		DeviceID:   "d1",
		Bizzes:     []string{"chat", "config"},
		DBPath:     os.Getenv(helperDBEnv),
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		Handler: func(tx *sql.Tx, batch []client.Entry) error {
			for _, e := range batch {
				if _, err := tx.Exec(`INSERT INTO app_entries (channel, seq) VALUES (?, ?)`, e.Channel, e.Seq); err != nil {
					return err
				}
			}
			return nil
		},
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DB().Exec(`CREATE TABLE IF NOT EXISTS app_entries (id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, seq INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	t.Fatal(c.Run(context.Background())) // runs until killed
}

// The wire is at-least-once: a client killed after it committed a push and
// before its ack reached the server gets that push again. The app must see
// every entry exactly once anyway, in order.
func TestExactlyOnceAcrossProcessKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills processes")
	}
	n := MustStartNode(t)
	dbPath := filepath.Join(t.TempDir(), "app.db")
	const total = 300
	var pubWG sync.WaitGroup
	pubWG.Go(func() {
		for i := range total {
			n.publish("chat", u1, fmt.Sprintf(`{"i":%d}`, i))
			n.publishReq(putReq("config", global, fmt.Sprintf("k%d", i%7), fmt.Sprintf(`{"i":%d}`, i)))
			if i%10 == 0 {
				time.Sleep(2 * time.Millisecond)
			}
		}
	})
	t.Cleanup(pubWG.Wait)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	start := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperClientProcess$", "-test.v")
		cmd.Env = append(os.Environ(), helperEnv+"=1", helperServerEnv+"="+n.url(), helperTokenEnv+"="+n.token("u1"), helperDBEnv+"="+dbPath)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	for range 6 {
		cmd, _ := start()
		time.Sleep(time.Duration(30+rng.IntN(300)) * time.Millisecond) // a random moment, not an assertion
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	cmd, out := start()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pubWG.Wait()

	db, err := sql.Open("sqlite", dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func() int {
		var c int
		if err := db.QueryRow(`SELECT count(*) FROM app_entries`).Scan(&c); err != nil {
			return -1
		}
		return c
	}
	deadline := time.Now().Add(20 * time.Second)
	for count() < 2*total {
		if time.Now().After(deadline) {
			t.Fatalf("app table has %d of %d entries\nclient output:\n%s", count(), 2*total, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	rows, err := db.Query(`SELECT channel, seq FROM app_entries ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	next := map[string]uint64{"chat/user:u1": 1, "config/global": 1}
	for rows.Next() {
		var ch string
		var seq uint64
		if err := rows.Scan(&ch, &seq); err != nil {
			t.Fatal(err)
		}
		if seq != next[ch] {
			t.Fatalf("%s: app got seq %d, want %d (a repeat or a loss)", ch, seq, next[ch])
		}
		next[ch]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for ch, nx := range next {
		if nx != total+1 {
			t.Fatalf("%s: app got %d entries, want %d", ch, nx-1, total)
		}
	}
}
