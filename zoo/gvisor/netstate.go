package main

// What netstack tells about a connection: its state, the TCP parameters for `state`'s info, and
// errno names for its errors.

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/syserr"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// stateNames maps netstack's endpoint states (its own enum, numbered like Linux's tcp_states.h, plus
// four internal ones) to the protocol's RFC 9293 names.
var stateNames = map[tcp.EndpointState]string{
	tcp.StateEstablished: "ESTABLISHED",
	tcp.StateSynSent:     "SYN-SENT",
	tcp.StateSynRecv:     "SYN-RECEIVED",
	tcp.StateFinWait1:    "FIN-WAIT-1",
	tcp.StateFinWait2:    "FIN-WAIT-2",
	tcp.StateTimeWait:    "TIME-WAIT",
	tcp.StateClose:       "CLOSED",
	tcp.StateCloseWait:   "CLOSE-WAIT",
	tcp.StateLastAck:     "LAST-ACK",
	tcp.StateListen:      "LISTEN",
	tcp.StateClosing:     "CLOSING",
	// Internal states: a fresh or bound endpoint, connect() called but SYN not yet out, and an
	// endpoint ended by an error (reset, timeout).
	tcp.StateInitial:    "CLOSED",
	tcp.StateBound:      "CLOSED",
	tcp.StateConnecting: "SYN-SENT",
	tcp.StateError:      "CLOSED",
}

func stateName(ep tcpip.Endpoint) (string, uint32) {
	code := ep.State()
	if name, ok := stateNames[tcp.EndpointState(code)]; ok {
		return name, code
	}
	return "UNKNOWN", code
}

// snapshot is what the agent keeps of netstack's per-segment TCP probe.
type snapshot struct {
	timestamps, sack bool
	sndWScale        uint8 // shift applied to the peer's windows
	rcvWScale        uint8 // shift applied to our advertised windows
	sndMSS           int
}

// probeStore keeps the latest probe snapshot of each connection. netstack calls the probe for every
// segment an established-type endpoint processes, so the snapshot describes the connection as of its
// last received segment (there is none yet right after an active open's handshake).
type probeStore struct {
	mu   sync.Mutex
	last map[stack.TCPEndpointID]snapshot
}

var probes = &probeStore{last: map[stack.TCPEndpointID]snapshot{}}

func (p *probeStore) record(st *stack.TCPEndpointState) {
	snap := snapshot{
		timestamps: st.SendTSOk, sack: st.SACKPermitted,
		sndWScale: st.Sender.SndWndScale, rcvWScale: st.Receiver.RcvWndScale, sndMSS: st.Sender.MaxPayloadSize,
	}
	p.mu.Lock()
	p.last[st.ID] = snap
	p.mu.Unlock()
}

func (p *probeStore) get(id stack.TCPEndpointID) (snapshot, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	snap, ok := p.last[id]
	return snap, ok
}

func endpointID(ep tcpip.Endpoint) (stack.TCPEndpointID, bool) {
	info, ok := ep.Info().(*stack.TransportEndpointInfo)
	if !ok {
		return stack.TCPEndpointID{}, false
	}
	return stack.TCPEndpointID(info.ID), true
}

// tcpInfo gathers the protocol's `info` members that netstack exposes: RTO from TCP_INFO, and the
// negotiated options, window scales and MSS from the latest probe snapshot.
func tcpInfo(ep tcpip.Endpoint, code uint32) map[string]any {
	info := map[string]any{"state_code": code}
	var ti tcpip.TCPInfoOption
	if err := ep.GetSockOpt(&ti); err == nil && ti.RTO > 0 {
		info["rto"] = ti.RTO.Microseconds()
	}
	id, ok := endpointID(ep)
	if !ok {
		return info
	}
	snap, ok := probes.get(id)
	if !ok {
		return info
	}
	options, raw := []string{}, 0
	if snap.timestamps {
		options, raw = append(options, "timestamps"), raw|1
	}
	if snap.sack {
		options, raw = append(options, "sack"), raw|2
	}
	// netstack keeps no "window scaling agreed" flag; it offers a non-zero shift and uses 0 when the
	// peer sent no WS option, so a non-zero receive shift means scaling was agreed.
	if snap.rcvWScale > 0 {
		options, raw = append(options, "wscale"), raw|4
	}
	info["options"], info["options_raw"] = options, raw
	info["snd_wscale"] = int(snap.sndWScale)
	info["rcv_wscale"] = int(snap.rcvWScale)
	info["snd_mss"] = snap.sndMSS
	return info
}

// errnoName maps a netstack error to the POSIX errno name, through gVisor's own translation table.
func errnoName(err tcpip.Error) (name string) {
	defer func() {
		if recover() != nil { // a few internal errors have no Linux errno
			name = "EIO"
		}
	}()
	e := syserr.TranslateNetstackError(err)
	if e == nil {
		return "EIO"
	}
	n := unix.Errno(e.ToLinux())
	if name := unix.ErrnoName(n); name != "" {
		return name
	}
	return fmt.Sprintf("E%d", int(n))
}
