// Package sample generates realistic Segment messages (analytics.js-,
// mobile- and server-library-shaped) for `segwarehouse dev`, benchmarks and
// tests. Output is deterministic for a seed.
package sample

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// Mix is the share of each call type, in percent; the rest are tracks.
type Mix struct {
	Page, Identify, Group, Screen, Alias int
}

// DefaultMix is the benchmark's workload: 70% track, 12% page, 10%
// identify, 3% group, 3% screen, 2% alias.
var DefaultMix = Mix{Page: 12, Identify: 10, Group: 3, Screen: 3, Alias: 2}

// Generator makes messages. It is not safe for concurrent use.
type Generator struct {
	rng    *rand.Rand
	events []string
	users  int
	mix    Mix
	n      int
	Start  time.Time // first message's originalTimestamp
	Prefix string    // messageId prefix
}

// New returns a generator with the given number of distinct track event
// names and users.
func New(seed uint64, events, users int, mix Mix) *Generator {
	g := &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), users: users, mix: mix,
		Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Prefix: "msg-" + strconv.FormatUint(seed, 36) + "-"}
	base := []string{"Order Completed", "Product Viewed", "Product Added", "Checkout Started", "Signed Up",
		"Cart Viewed", "Coupon Applied", "Product Searched", "Video Playback Started", "Subscription Renewed"}
	for i := 0; i < events; i++ {
		if i < len(base) {
			g.events = append(g.events, base[i])
		} else {
			g.events = append(g.events, fmt.Sprintf("Feature %d Used", i))
		}
	}
	return g
}

// Next returns one message as JSON.
func (g *Generator) Next() []byte {
	b, _ := json.Marshal(g.NextMap())
	return b
}

// NextMap returns one message as a map.
func (g *Generator) NextMap() map[string]any {
	g.n++
	r := g.rng.IntN(100)
	ts := g.Start.Add(time.Duration(g.n) * 10 * time.Millisecond)
	user := fmt.Sprintf("user-%d", g.rng.IntN(g.users))
	m := map[string]any{
		"messageId":         g.Prefix + strconv.Itoa(g.n),
		"originalTimestamp": ts.Format(time.RFC3339Nano),
		"sentAt":            ts.Add(150 * time.Millisecond).Format(time.RFC3339Nano),
		"anonymousId":       fmt.Sprintf("anon-%08x", g.rng.Uint32()),
		"userId":            user,
		"channel":           "client",
		"version":           2,
		"integrations":      map[string]any{},
	}
	switch {
	case r < g.mix.Page:
		m["type"] = "page"
		m["name"] = []string{"Home", "Pricing", "Docs", "Blog"}[g.rng.IntN(4)]
		m["category"] = "Marketing"
		m["properties"] = map[string]any{"path": "/p/" + strconv.Itoa(g.rng.IntN(500)), "referrer": "https://www.google.com/",
			"search": "", "title": "Segment-style page", "url": "https://example.com/p/" + strconv.Itoa(g.rng.IntN(500))}
		m["context"] = g.webContext()
	case r < g.mix.Page+g.mix.Identify:
		m["type"] = "identify"
		m["traits"] = map[string]any{"email": user + "@example.com", "firstName": "Ada", "lastName": "Lovelace",
			"plan": []string{"free", "pro", "enterprise"}[g.rng.IntN(3)], "logins": g.rng.IntN(1000),
			"address": map[string]any{"city": "London", "postalCode": "NW1"}, "createdAt": ts.Add(-90 * 24 * time.Hour).Format(time.RFC3339)}
		m["context"] = g.webContext()
	case r < g.mix.Page+g.mix.Identify+g.mix.Group:
		m["type"] = "group"
		m["channel"] = "server"
		m["groupId"] = fmt.Sprintf("account-%d", g.rng.IntN(max(g.users/20, 1)))
		m["traits"] = map[string]any{"name": "Initech", "employees": 10 + g.rng.IntN(5000), "industry": "Software", "plan": "enterprise"}
		m["context"] = map[string]any{"library": map[string]any{"name": "analytics-go", "version": "3.3.0"}}
	case r < g.mix.Page+g.mix.Identify+g.mix.Group+g.mix.Screen:
		m["type"] = "screen"
		m["channel"] = "mobile"
		m["name"] = []string{"Feed", "Settings", "Profile"}[g.rng.IntN(3)]
		m["properties"] = map[string]any{"variation": "blue", "duration": g.rng.Float64() * 30}
		m["context"] = g.mobileContext()
	case r < g.mix.Page+g.mix.Identify+g.mix.Group+g.mix.Screen+g.mix.Alias:
		m["type"] = "alias"
		m["previousId"] = m["anonymousId"]
		m["context"] = g.webContext()
	default:
		m["type"] = "track"
		m["event"] = g.events[g.rng.IntN(len(g.events))]
		m["properties"] = map[string]any{
			"orderId": fmt.Sprintf("order-%d", g.rng.IntN(1_000_000)), "revenue": float64(g.rng.IntN(100000)) / 100,
			"currency": "USD", "quantity": 1 + g.rng.IntN(5), "coupon": nil, "discount": 2.5,
			"products": []any{map[string]any{"sku": "sku-" + strconv.Itoa(g.rng.IntN(100)), "price": 19.99}},
			"shipping": map[string]any{"method": "ground", "cost": 4.99},
			"gift":     g.rng.IntN(2) == 0,
		}
		if g.rng.IntN(2) == 0 {
			m["context"] = g.webContext()
		} else {
			m["context"] = g.mobileContext()
		}
	}
	return m
}

func (g *Generator) webContext() map[string]any {
	return map[string]any{
		"ip":        fmt.Sprintf("10.%d.%d.%d", g.rng.IntN(256), g.rng.IntN(256), g.rng.IntN(256)),
		"library":   map[string]any{"name": "analytics.js", "version": "4.1.0"},
		"locale":    "en-US",
		"page":      map[string]any{"path": "/checkout", "referrer": "https://www.google.com/", "title": "Checkout", "url": "https://example.com/checkout"},
		"userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
		"campaign":  map[string]any{"name": "spring_sale", "source": "newsletter", "medium": "email"},
	}
}

func (g *Generator) mobileContext() map[string]any {
	return map[string]any{
		"app":      map[string]any{"name": "Example", "version": "3.2.1", "build": "321", "namespace": "com.example.app"},
		"device":   map[string]any{"id": fmt.Sprintf("dev-%08x", g.rng.Uint32()), "manufacturer": "Apple", "model": "iPhone15,2", "type": "ios", "adTrackingEnabled": false},
		"library":  map[string]any{"name": "analytics-ios", "version": "4.1.8"},
		"network":  map[string]any{"wifi": true, "cellular": false, "carrier": "T-Mobile"},
		"os":       map[string]any{"name": "iOS", "version": "17.1"},
		"screen":   map[string]any{"width": 390, "height": 844, "density": 3},
		"locale":   "en-US",
		"timezone": "Europe/Berlin",
	}
}
