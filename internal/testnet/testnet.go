package testnet

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback host:port nothing listened on when it
// returned (the port was bound and released).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
