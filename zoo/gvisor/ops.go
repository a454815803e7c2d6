package main

// The socket operations of the agent protocol, on netstack's tcpip.Endpoint API.

import (
	"bytes"
	"encoding/base64"
	"net"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// ---- helpers ----

// newEndpoint creates a TCP endpoint with SO_REUSEADDR, IPV6_V6ONLY and the buffer/nodelay arguments.
func (a *agent) newEndpoint(proto tcpip.NetworkProtocolNumber, args map[string]any) (tcpip.Endpoint, *waiter.Queue, *opError) {
	wq := new(waiter.Queue)
	ep, err := a.stack.NewEndpoint(tcp.ProtocolNumber, proto, wq)
	if err != nil {
		return nil, nil, netErr(err)
	}
	so := ep.SocketOptions()
	so.SetReuseAddress(true)
	if proto == ipv6.ProtocolNumber {
		so.SetV6Only(true)
	}
	for _, name := range []string{"rcvbuf", "sndbuf", "nodelay"} {
		if v, present := args[name]; present && v != nil {
			if e := setOption(ep, name, v); e != nil {
				ep.Close()
				return nil, nil, e
			}
		}
	}
	return ep, wq, nil
}

func setOption(ep tcpip.Endpoint, name string, v any) *opError {
	so := ep.SocketOptions()
	switch name {
	case "nodelay", "keepalive":
		b, ok := v.(bool)
		if !ok {
			return fail("EINVAL", "%s takes a boolean", name)
		}
		if name == "nodelay" {
			so.SetDelayOption(!b)
		} else {
			so.SetKeepAlive(b)
		}
	case "rcvbuf", "sndbuf":
		n, ok := intValue(v)
		if !ok || n <= 0 {
			return fail("EINVAL", "%s takes a positive integer", name)
		}
		if name == "rcvbuf" {
			so.SetReceiveBufferSize(n, true)
		} else {
			so.SetSendBufferSize(n, true)
		}
	case "linger":
		if v == nil {
			so.SetLinger(tcpip.LingerOption{})
			return nil
		}
		n, ok := intValue(v)
		if !ok || n < 0 {
			return fail("EINVAL", "linger takes null or a non-negative integer")
		}
		so.SetLinger(tcpip.LingerOption{Enabled: true, Timeout: time.Duration(n) * time.Second})
	default:
		return fail("EINVAL", "unknown option %q", name)
	}
	return nil
}

// wait retries try while it reports ErrWouldBlock, until the events in mask, the deadline, or the
// handle being closed.
func (s *sock) wait(mask waiter.EventMask, until time.Time, try func() tcpip.Error) (tcpip.Error, *opError) {
	entry, ch := waiter.NewChannelEntry(mask)
	s.wq.EventRegister(&entry)
	defer s.wq.EventUnregister(&entry)
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	for {
		select {
		case <-s.done:
			return nil, fail("EBADF", "the socket was closed while waiting")
		default:
		}
		if err := try(); err == nil || !isWouldBlock(err) {
			return err, nil
		}
		select {
		case <-ch:
		case <-s.done:
			return nil, fail("EBADF", "the socket was closed while waiting")
		case <-timer.C:
			return nil, fail("ETIMEDOUT", "timed out (agent timeout_ms)")
		}
	}
}

func isWouldBlock(err tcpip.Error) bool {
	_, ok := err.(*tcpip.ErrWouldBlock)
	return ok
}

// ---- operations ----

func opListen(a *agent, args map[string]any) (result, *opError) {
	proto, e := family(args)
	if e != nil {
		return nil, e
	}
	addr, _, e := address(args, "addr", proto)
	if e != nil {
		return nil, e
	}
	port, e := intArg(args, "port", 0)
	if e == nil && (port < 0 || port > 65535) {
		e = fail("EINVAL", "port out of range")
	}
	backlog, e2 := intArg(args, "backlog", 16)
	if e != nil || e2 != nil {
		return nil, firstErr(e, e2)
	}
	ep, wq, e := a.newEndpoint(proto, args)
	if e != nil {
		return nil, e
	}
	if err := ep.Bind(tcpip.FullAddress{Addr: addr, Port: uint16(port)}); err != nil {
		ep.Close()
		return nil, netErr(err)
	}
	if err := ep.Listen(int(backlog)); err != nil {
		ep.Close()
		return nil, netErr(err)
	}
	local, _ := ep.GetLocalAddress()
	return result{"sock": a.add(ep, wq), "port": local.Port}, nil
}

func opAccept(a *agent, args map[string]any) (result, *opError) {
	s, e := a.lookup(args)
	if e != nil {
		return nil, e
	}
	until, e := deadline(args, 5000)
	if e != nil {
		return nil, e
	}
	var (
		nep  tcpip.Endpoint
		nwq  *waiter.Queue
		peer tcpip.FullAddress
	)
	err, e := s.wait(waiter.ReadableEvents, until, func() tcpip.Error {
		var err tcpip.Error
		nep, nwq, err = s.ep.Accept(&peer)
		return err
	})
	if e != nil {
		return nil, e
	}
	if err != nil {
		return nil, netErr(err)
	}
	local, _ := nep.GetLocalAddress()
	return result{"sock": a.add(nep, nwq), "peer": endpoint(peer), "local": endpoint(local)}, nil
}

func (a *agent) permitted(ip net.IP) bool {
	for _, n := range a.allowed {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func opConnect(a *agent, args map[string]any) (result, *opError) {
	proto, e := family(args)
	if e != nil {
		return nil, e
	}
	if _, present := args["addr"]; !present {
		return nil, fail("EINVAL", "addr is required")
	}
	addr, ip, e := address(args, "addr", proto)
	if e != nil {
		return nil, e
	}
	port, e := intArg(args, "port", -1)
	if e == nil && (port <= 0 || port > 65535) {
		e = fail("EINVAL", "port is required (1..65535)")
	}
	laddr, _, e2 := address(args, "local_addr", proto)
	lport, e3 := intArg(args, "local_port", 0)
	until, e4 := deadline(args, 5000)
	if e := firstErr(e, e2, e3, e4); e != nil {
		return nil, e
	}
	if !a.permitted(ip) {
		return nil, fail("EPERM", "%s is not in the connect allow-list", ip)
	}
	ep, wq, e := a.newEndpoint(proto, args)
	if e != nil {
		return nil, e
	}
	if laddr != "" || lport != 0 {
		if err := ep.Bind(tcpip.FullAddress{Addr: laddr, Port: uint16(lport)}); err != nil {
			ep.Close()
			return nil, netErr(err)
		}
	}
	s := &sock{ep: ep, wq: wq, done: make(chan struct{})}
	started := false
	err, e := s.wait(waiter.WritableEvents|waiter.EventHUp|waiter.EventErr, until, func() tcpip.Error {
		if !started {
			started = true
			err := ep.Connect(tcpip.FullAddress{Addr: addr, Port: uint16(port)})
			if _, ok := err.(*tcpip.ErrConnectStarted); ok {
				return &tcpip.ErrWouldBlock{}
			}
			return err
		}
		if ep.Readiness(waiter.WritableEvents|waiter.EventHUp|waiter.EventErr) == 0 {
			return &tcpip.ErrWouldBlock{}
		}
		return ep.LastError()
	})
	if e == nil && err != nil {
		e = netErr(err)
	}
	if e != nil {
		ep.Close()
		return nil, e
	}
	local, _ := ep.GetLocalAddress()
	peer, _ := ep.GetRemoteAddress()
	return result{"sock": a.add(ep, wq), "local": endpoint(local), "peer": endpoint(peer)}, nil
}
func opSend(a *agent, args map[string]any) (result, *opError) {
	s, e := a.lookup(args)
	if e != nil {
		return nil, e
	}
	data, e := payload(args)
	if e != nil {
		return nil, e
	}
	until, e := deadline(args, 10000)
	if e != nil {
		return nil, e
	}
	sent := 0
	err, e := s.wait(waiter.WritableEvents, until, func() tcpip.Error {
		for sent < len(data) {
			n, err := s.ep.Write(bytes.NewReader(data[sent:]), tcpip.WriteOptions{})
			sent += int(n)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if e == nil && err != nil {
		e = netErr(err)
	}
	if e != nil {
		e.extra = map[string]any{"sent": sent}
		return nil, e
	}
	return result{"sent": sent}, nil
}

func opRecv(a *agent, args map[string]any) (result, *opError) {
	s, e := a.lookup(args)
	if e != nil {
		return nil, e
	}
	max, e := intArg(args, "max", 65536)
	if e == nil && max <= 0 {
		e = fail("EINVAL", "max must be positive")
	}
	until, e2 := deadline(args, 2000)
	if e := firstErr(e, e2); e != nil {
		return nil, e
	}
	var buf bytes.Buffer
	eof := false
	err, e := s.wait(waiter.ReadableEvents, until, func() tcpip.Error {
		_, err := s.ep.Read(&tcpip.LimitedWriter{W: &buf, N: max}, tcpip.ReadOptions{})
		if _, ok := err.(*tcpip.ErrClosedForReceive); ok {
			eof = true
			return nil
		}
		return err
	})
	if e != nil {
		return nil, e
	}
	if err != nil {
		return nil, netErr(err)
	}
	return result{"data_b64": base64.StdEncoding.EncodeToString(buf.Bytes()), "len": buf.Len(), "eof": eof}, nil
}

func opShutdown(a *agent, args map[string]any) (result, *opError) {
	s, e := a.lookup(args)
	if e != nil {
		return nil, e
	}
	how, _, _ := strArg(args, "how")
	flags := map[string]tcpip.ShutdownFlags{
		"wr": tcpip.ShutdownWrite, "rd": tcpip.ShutdownRead, "rdwr": tcpip.ShutdownRead | tcpip.ShutdownWrite,
	}[how]
	if flags == 0 {
		return nil, fail("EINVAL", `how must be "wr", "rd" or "rdwr"`)
	}
	if err := s.ep.Shutdown(flags); err != nil {
		return nil, netErr(err)
	}
	return result{}, nil
}

// opClose is a plain close with whatever linger is set. netstack's Close never blocks (gVisor's
// sentry, not netstack, implements the wait of a lingering close), so neither does this.
func opClose(a *agent, args map[string]any) (result, *opError) {
	s, e := a.remove(args)
	if e != nil {
		return nil, e
	}
	s.ep.Close()
	return result{}, nil
}

// opAbort sets SO_LINGER {on, 0} and closes: netstack then resets a synchronized connection.
func opAbort(a *agent, args map[string]any) (result, *opError) {
	s, e := a.remove(args)
	if e != nil {
		return nil, e
	}
	s.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true})
	s.ep.Close()
	return result{}, nil
}

func opState(a *agent, args map[string]any) (result, *opError) {
	s, e := a.lookup(args)
	if e != nil {
		return nil, e
	}
	name, code := stateName(s.ep)
	return result{"state": name, "info": tcpInfo(s.ep, code)}, nil
}

func opSockopt(a *agent, args map[string]any) (result, *opError) {
	s, e := a.lookup(args)
	if e != nil {
		return nil, e
	}
	name, _, _ := strArg(args, "name")
	if e := setOption(s.ep, name, args["value"]); e != nil {
		return nil, e
	}
	return result{}, nil
}
