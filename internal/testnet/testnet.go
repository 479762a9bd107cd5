package testnet

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback host:port nothing listened on when it
// returned (the port was bound and released).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return FreeAddrOn(t, "127.0.0.1")
}

// FreeAddrOn is FreeAddr on the address ip (127.0.0.11: all of 127/8 is
// loopback on Linux).
func FreeAddrOn(t testing.TB, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
