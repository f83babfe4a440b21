package loadtest

import (
	"context"
	"fmt"
	"io"
	"net"
)

// Hold opens n idle TCP connections from 127.0.0.2 to a listener of its own
// on 127.0.0.1 and keeps them until ctx ends: the ephemeral ports they take
// on 127.0.0.2 are the condition under which a test that checks a port on
// 127.0.0.1 and then binds every address fails ("address already in use").
// A suite that holds every port it uses passes beside it.
func Hold(ctx context.Context, n int, out io.Writer) error {
	raiseFileLimit()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	accepted := make(chan net.Conn, n)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	conns := make([]net.Conn, 0, 2*n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return fmt.Errorf("connection %d of %d: %w", i+1, n, err)
		}
		conns = append(conns, c, <-accepted)
	}
	fmt.Fprintf(out, "holding %d idle connections from 127.0.0.2 to %s; interrupt to stop\n", n, ln.Addr())
	<-ctx.Done()
	return nil
}
