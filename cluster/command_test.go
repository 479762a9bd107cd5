package cluster

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

func TestCommandRoundTrip(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	exp := at.Add(time.Hour)
	c := &Command{Op: OpRotateKey, At: at, Actor: "op", ID: "old", Grace: 90 * time.Second, Key: &keystore.Key{
		ID: "new", Hash: keystore.HashKey("ek_secret"), Prefix: "ek_secre", Scopes: []string{"a"}, ExpiresAt: &exp,
		RateLimit: &keystore.RateLimit{Limit: 5, Duration: time.Minute}, Metadata: map[string]string{"m": "v"},
	}}
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("ek_secret")) {
		t.Fatal("the command holds the raw key")
	}
	got, err := DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, c)
	}
}

func TestDecodeCommandRefuses(t *testing.T) {
	at := `"at":"2026-01-02T03:04:05Z"`
	for name, in := range map[string]string{
		"empty":         "",
		"version":       "\x02{}",
		"unknown op":    "\x01{\"op\":\"key.delete\"," + at + "}",
		"unknown field": "\x01{\"op\":\"key.revoke\",\"id\":\"k\",\"raw\":\"x\"," + at + "}",
		"no time":       "\x01{\"op\":\"key.revoke\",\"id\":\"k\"}",
		"no id":         "\x01{\"op\":\"key.revoke\"," + at + "}",
		"no key":        "\x01{\"op\":\"key.create\"," + at + "}",
		"trailing":      "\x01{\"op\":\"key.revoke\",\"id\":\"k\"," + at + "}{}",
		"not json":      "\x01op=key.revoke",
	} {
		if _, err := DecodeCommand([]byte(in)); err == nil {
			t.Errorf("%s: decoded %q", name, in)
		} else if !strings.HasPrefix(err.Error(), "cluster: ") {
			t.Errorf("%s: error %q does not say where it comes from", name, err)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte("\x01{\"op\":\"key.revoke\",\"id\":\"k\",\"at\":\"2026-01-02T03:04:05Z\"}"))
	f.Add([]byte("\x01{\"op\":\"key.import\",\"keys\":[null],\"at\":\"2026-01-02T03:04:05Z\"}"))
	f.Add([]byte("\x01{\"op\":\"store.adopt\",\"store_id\":\"s\",\"at\":\"2026-01-02T03:04:05Z\"}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		again, err := c.Encode()
		if err != nil {
			t.Fatalf("a decoded command does not encode: %v", err)
		}
		c2, err := DecodeCommand(again)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("re-encoded command decodes to %+v, %v; want %+v", c2, err, c)
		}
	})
}
