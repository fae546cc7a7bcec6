package client

// SetTestHooks makes c call sent with the write_id of every write it sends,
// and drop the connection instead of applying a result when drop says so.
// Call it before Run.
func SetTestHooks(c *Client, sent func(writeID string), drop func(writeID string) bool) {
	c.hooks = hooks{sentWrite: sent, dropResult: drop}
}
