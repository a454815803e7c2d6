// Command tcpconf-gvisor runs gVisor's netstack on a tap device and drives it with the suite's
// upper-tester agent protocol (docs/agent-protocol.md) on stdin/stdout. See README.md.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/link/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip/link/tun"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// stackVersion is set at build time (-ldflags -X) to the Debian package version of netstack.
var stackVersion = "unknown"

const nicID tcpip.NICID = 1

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	tap := flag.String("tap", "", "tap device to attach to (must exist and be up)")
	mac := flag.String("mac", "02:00:00:00:00:01", "MAC address of the stack")
	ip4 := flag.String("ipv4", "198.18.0.1/24", "IPv4 address/prefix of the stack")
	ip6 := flag.String("ipv6", "2001:2::1/64", "IPv6 address/prefix of the stack")
	token := flag.String("token", "", "token the first hello must carry")
	var allow listFlag
	flag.Var(&allow, "allow-connect", "address or network connect may reach (repeatable)")
	flag.Parse()
	if *tap == "" {
		fatal("--tap is required")
	}
	allowed, err := parseAllowList(allow)
	if err != nil {
		fatal(err.Error())
	}
	s, err := newStack(*tap, *mac, []string{*ip4, *ip6})
	if err != nil {
		fatal(err.Error())
	}
	a := newAgent(s, *token, allowed, os.Stdout)
	a.serve(os.Stdin)
	a.closeAll()
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "tcpconf-gvisor:", msg)
	os.Exit(2)
}

// newStack builds a netstack with IPv4, IPv6, ARP and TCP (SACK on) attached to the tap device.
func newStack(tapName, mac string, addrs []string) (*stack.Stack, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, fmt.Errorf("--mac: %v", err)
	}
	s := stack.New(stack.Options{
		// ipv6.NewProtocol leaves duplicate-address detection off, so the address is usable at once.
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return nil, fmt.Errorf("enabling SACK: %s", err)
	}
	s.AddTCPProbe(probes.record) // before any endpoint exists: only later endpoints get the probe

	fd, err := tun.OpenTAP(tapName)
	if err != nil {
		return nil, fmt.Errorf("opening tap %s: %v", tapName, err)
	}
	mtu, err := rawfile.GetMTU(tapName)
	if err != nil {
		return nil, fmt.Errorf("reading the MTU of %s: %v", tapName, err)
	}
	link, err := fdbased.New(&fdbased.Options{
		FDs: []int{fd}, MTU: mtu, EthernetHeader: true, Address: tcpip.LinkAddress(hw),
	})
	if err != nil {
		return nil, fmt.Errorf("fdbased link endpoint: %v", err)
	}
	if err := s.CreateNIC(nicID, link); err != nil {
		return nil, fmt.Errorf("creating the NIC: %s", err)
	}
	var routes []tcpip.Route
	for _, a := range addrs {
		ip, subnet, err := net.ParseCIDR(a)
		if err != nil {
			return nil, fmt.Errorf("address %q: %v", a, err)
		}
		proto, addr := ipv6.ProtocolNumber, tcpip.Address(ip.To16())
		if ip4 := ip.To4(); ip4 != nil {
			proto, addr = ipv4.ProtocolNumber, tcpip.Address(ip4)
		}
		prefix, _ := subnet.Mask.Size()
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr, PrefixLen: prefix}}
		if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			return nil, fmt.Errorf("adding %s: %s", a, err)
		}
		routes = append(routes, tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: nicID})
	}
	s.SetRouteTable(routes)
	return s, nil
}

// parseAllowList turns ADDR or ADDR/PREFIX arguments into networks.
func parseAllowList(items []string) ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, item := range items {
		if !strings.Contains(item, "/") {
			ip := net.ParseIP(item)
			if ip == nil {
				return nil, fmt.Errorf("--allow-connect %q: not an address", item)
			}
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			nets = append(nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(item)
		if err != nil {
			return nil, fmt.Errorf("--allow-connect %q: %v", item, err)
		}
		nets = append(nets, n)
	}
	return nets, nil
}
