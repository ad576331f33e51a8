package consumer

import "time"

// RefetchClients is how many clients c made to read refused records again.
func RefetchClients(c *Consumer) int64 { return c.refetchClients.Load() }

// RefetchOpen tells whether c still holds a client for reading refused
// records again.
func RefetchOpen(c *Consumer) bool {
	c.refetchMu.Lock()
	defer c.refetchMu.Unlock()
	return c.refetchCl != nil
}

// WithTopicGone shortens how long Kafka must not know a topic before a
// re-read of a refused record takes it for deleted.
func WithTopicGone(d time.Duration) Option { return func(o *options) { o.topicGone = d } }
