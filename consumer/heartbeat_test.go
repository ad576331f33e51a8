package consumer

import (
	"testing"
	"time"
)

// TestHeartbeatInterval: a third of the session timeout, at most kgo's
// default 3s. With kgo's default a SEGWH_KAFKA_SESSION_TIMEOUT under 3s
// made the client refuse to start ("heartbeat interval 3s is erroneously
// larger than the session timeout"), and one of 3s expired members between
// heartbeats.
func TestHeartbeatInterval(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		session time.Duration
		want    time.Duration
	}{
		{"default 45s", 45 * time.Second, 3 * time.Second},
		{"9s", 9 * time.Second, 3 * time.Second},
		{"6s", 6 * time.Second, 2 * time.Second},
		{"3s", 3 * time.Second, time.Second},
		{"1s", time.Second, time.Second / 3},
		{"tiny", time.Nanosecond, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := heartbeatInterval(tt.session); got != tt.want {
				t.Errorf("heartbeatInterval(%s) = %s, want %s", tt.session, got, tt.want)
			}
		})
	}
}
