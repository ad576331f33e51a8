package e2e

import (
	"bufio"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// pgProxy forwards connections to a Postgres server over loopback, reading
// what the client sends message by message, and can freeze a connection
// in the middle of a COPY stream: once armed, the first CopyData message
// that passes is forwarded and then nothing more from that client until
// thaw. The backend then waits for the rest of the stream, exactly as it
// does for a client frozen there. The client must not ask for TLS
// (sslmode=disable).
type pgProxy struct {
	ln     net.Listener
	target string
	armed  atomic.Bool
	frozen chan struct{} // closed when a connection froze
	thaw   chan struct{} // closed to let it go on
	once   sync.Once
}

func newPGProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: target, frozen: make(chan struct{}), thaw: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.release()
	})
	return p
}

// via returns dsn, a URL, with its host and port replaced by the proxy's.
func (p *pgProxy) via(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *pgProxy) release() { p.once.Do(func() { close(p.thaw) }) }

func (p *pgProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

func (p *pgProxy) pipe(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	go func() {
		_, _ = io.Copy(client, server)
		client.Close()
		server.Close()
	}()
	r := bufio.NewReaderSize(client, 64<<10)
	// The startup message has no type byte: a length, then the rest.
	first := true
	hdr := make([]byte, 5)
	for {
		h := hdr[1:]
		if !first {
			h = hdr
		}
		if _, err := io.ReadFull(r, h); err != nil {
			return
		}
		l := h[len(h)-4:]
		n := (int(l[0])<<24 | int(l[1])<<16 | int(l[2])<<8 | int(l[3])) - 4
		if n < 0 {
			return
		}
		msg := make([]byte, len(h)+n)
		copy(msg, h)
		if _, err := io.ReadFull(r, msg[len(h):]); err != nil {
			return
		}
		if _, err := server.Write(msg); err != nil {
			return
		}
		if !first && msg[0] == 'd' && p.armed.CompareAndSwap(true, false) {
			close(p.frozen)
			<-p.thaw
		}
		first = false
	}
}
