package main

// Parsing and checking request arguments (protocol section 5) into netstack types.

import (
	"encoding/base64"
	"net"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

const pattern = "0123456789abcdef"

func intArg(args map[string]any, name string, def int64) (int64, *opError) {
	v, present := args[name]
	if !present || v == nil {
		return def, nil
	}
	i, ok := intValue(v)
	if !ok {
		return 0, fail("EINVAL", "%s must be an integer", name)
	}
	return i, nil
}

func strArg(args map[string]any, name string) (string, bool, *opError) {
	v, present := args[name]
	if !present || v == nil {
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", false, fail("EINVAL", "%s must be a string", name)
	}
	return s, true, nil
}

func deadline(args map[string]any, defMs int64) (time.Time, *opError) {
	ms, e := intArg(args, "timeout_ms", defMs)
	if e == nil && ms < 0 {
		e = fail("EINVAL", "timeout_ms must not be negative")
	}
	return time.Now().Add(time.Duration(ms) * time.Millisecond), e
}

// family returns the network protocol of "ipv4"/"ipv6".
func family(args map[string]any) (tcpip.NetworkProtocolNumber, *opError) {
	switch f, _, _ := strArg(args, "family"); f {
	case "ipv4":
		return ipv4.ProtocolNumber, nil
	case "ipv6":
		return ipv6.ProtocolNumber, nil
	}
	return 0, fail("EINVAL", `family must be "ipv4" or "ipv6"`)
}

// address parses a numeric address of the given family; absent means the wildcard (empty).
func address(args map[string]any, name string, proto tcpip.NetworkProtocolNumber) (tcpip.Address, net.IP, *opError) {
	s, present, e := strArg(args, name)
	if e != nil || !present {
		return "", nil, e
	}
	ip := net.ParseIP(s)
	switch {
	case ip == nil:
		return "", nil, fail("EINVAL", "%s %q is not a numeric address", name, s)
	case proto == ipv4.ProtocolNumber && ip.To4() != nil:
		return tcpip.Address(ip.To4()), ip, nil
	case proto == ipv6.ProtocolNumber && ip.To4() == nil:
		return tcpip.Address(ip.To16()), ip, nil
	}
	return "", nil, fail("EINVAL", "%s %q does not match the family", name, s)
}

func endpoint(addr tcpip.FullAddress) []any {
	ip := net.IP([]byte(addr.Addr))
	if len(ip) == 0 {
		ip = net.IPv4zero
	}
	return []any{ip.String(), addr.Port}
}

func payload(args map[string]any) ([]byte, *opError) {
	text, hasText, e1 := strArg(args, "data")
	b64, hasB64, e2 := strArg(args, "data_b64")
	n, e3 := intArg(args, "len", -1)
	if e := firstErr(e1, e2, e3); e != nil {
		return nil, e
	}
	count := 0
	for _, has := range []bool{hasText, hasB64, n >= 0} {
		if has {
			count++
		}
	}
	if count != 1 {
		return nil, fail("EINVAL", "give exactly one of data, data_b64, len")
	}
	switch {
	case hasText:
		return []byte(text), nil
	case hasB64:
		data, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fail("EINVAL", "data_b64: %v", err)
		}
		return data, nil
	}
	data := make([]byte, n)
	for i := range data {
		data[i] = pattern[i%len(pattern)]
	}
	return data, nil
}
func firstErr(errs ...*opError) *opError {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
