package main

// The agent session: reading request lines, the token handshake, dispatch (blocking operations on
// goroutines of their own), socket handles, and writing response lines under a mutex.

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/waiter"
)

const maxLine = 1 << 22 // longer request lines are refused with EINVAL

// opError is a failed request: an errno-style name, a message, and optional extra members.
type opError struct {
	name, msg string
	extra     map[string]any
}

func fail(name, format string, args ...any) *opError {
	return &opError{name: name, msg: fmt.Sprintf(format, args...)}
}

func netErr(err tcpip.Error) *opError { return &opError{name: errnoName(err), msg: err.String()} }

type result = map[string]any

type opFunc func(a *agent, args map[string]any) (result, *opError)

// ops lists every operation; blocking ones run on their own goroutine (protocol section 6).
var ops = map[string]struct {
	fn       opFunc
	blocking bool
}{
	"hello":    {opHello, false},
	"listen":   {opListen, false},
	"accept":   {opAccept, true},
	"connect":  {opConnect, true},
	"send":     {opSend, true},
	"recv":     {opRecv, true},
	"shutdown": {opShutdown, false},
	"close":    {opClose, false},
	"abort":    {opAbort, false},
	"state":    {opState, false},
	"sockopt":  {opSockopt, false},
	"bye":      {nil, false},
}

var opNames []string // what hello announces: exactly the keys of ops

func init() {
	for name := range ops {
		opNames = append(opNames, name)
	}
	sort.Strings(opNames)
}

// sock is one handle: a netstack endpoint, its waiter queue, and a channel closed when the handle is.
type sock struct {
	ep   tcpip.Endpoint
	wq   *waiter.Queue
	done chan struct{}
}

type agent struct {
	stack   *stack.Stack
	token   string
	allowed []*net.IPNet

	outMu sync.Mutex
	out   io.Writer

	authed, denied bool // touched only by the reader goroutine

	mu    sync.Mutex
	socks map[int]*sock
	next  int
}

func newAgent(s *stack.Stack, token string, allowed []*net.IPNet, out io.Writer) *agent {
	return &agent{stack: s, token: token, allowed: allowed, out: out, socks: map[int]*sock{}}
}

// serve reads requests until end of input or bye.
func (a *agent) serve(in io.Reader) {
	r := bufio.NewReaderSize(in, 64*1024)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > maxLine {
			a.respond(nil, nil, fail("EINVAL", "request line longer than %d bytes", maxLine))
		} else if len(bytes.TrimSpace(line)) > 0 && a.handle(line) {
			return
		}
		if err != nil {
			return
		}
	}
}

// handle processes one line and reports whether the session ends (bye).
func (a *agent) handle(line []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var req map[string]any
	if err := dec.Decode(&req); err != nil || req == nil {
		a.respond(nil, nil, fail("EINVAL", "not a JSON object"))
		return false
	}
	id, ok := intValue(req["id"])
	if !ok {
		a.respond(nil, nil, fail("EINVAL", "missing or non-integer id"))
		return false
	}
	op, _ := req["op"].(string)
	if e := a.checkToken(op, req); e != nil {
		a.respond(id, nil, e)
		return false
	}
	entry, known := ops[op]
	switch {
	case !known:
		a.respond(id, nil, fail("EINVAL", "unknown op %q", op))
	case op == "bye":
		a.respond(id, result{}, nil)
		return true
	case entry.blocking:
		go func() { res, e := entry.fn(a, req); a.respond(id, res, e) }()
	default:
		res, e := entry.fn(a, req)
		a.respond(id, res, e)
	}
	return false
}

// checkToken enforces the handshake: with a token, the first request must be hello carrying it;
// otherwise every request of the session is refused.
func (a *agent) checkToken(op string, req map[string]any) *opError {
	if a.token == "" || a.authed {
		return nil
	}
	if !a.denied && op == "hello" {
		given, _ := req["token"].(string)
		if subtle.ConstantTimeCompare([]byte(given), []byte(a.token)) == 1 {
			a.authed = true
			return nil
		}
	}
	a.denied = true
	return fail("EACCES", "handshake missing or wrong token")
}

// respond writes one response line; id nil is written as JSON null.
func (a *agent) respond(id any, res result, e *opError) {
	msg := map[string]any{"id": id, "ok": e == nil}
	if e != nil {
		for k, v := range e.extra {
			msg[k] = v
		}
		msg["error"], msg["message"] = e.name, e.msg
	}
	for k, v := range res {
		msg[k] = v
	}
	line, err := json.Marshal(msg)
	if err != nil {
		line = []byte(fmt.Sprintf(`{"id":%v,"ok":false,"error":"EIO","message":"cannot encode the response"}`, id))
	}
	a.outMu.Lock()
	defer a.outMu.Unlock()
	if _, err := a.out.Write(append(line, '\n')); err != nil {
		fmt.Fprintln(os.Stderr, "tcpconf-gvisor: writing a response:", err)
	}
}

func (a *agent) add(ep tcpip.Endpoint, wq *waiter.Queue) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.next
	a.next++
	a.socks[h] = &sock{ep: ep, wq: wq, done: make(chan struct{})}
	return h
}

func (a *agent) lookup(args map[string]any) (*sock, *opError) {
	h, ok := intValue(args["sock"])
	if !ok {
		return nil, fail("EINVAL", "sock must be an integer")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.socks[int(h)]
	if !ok {
		return nil, fail("EBADF", "no open socket with handle %d", h)
	}
	return s, nil
}

// remove frees a handle and wakes its waiters, which then answer EBADF.
func (a *agent) remove(args map[string]any) (*sock, *opError) {
	s, e := a.lookup(args)
	if e != nil {
		return nil, e
	}
	h, _ := intValue(args["sock"])
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.socks[int(h)] != s {
		return nil, fail("EBADF", "no open socket with handle %d", h)
	}
	delete(a.socks, int(h))
	close(s.done)
	return s, nil
}

func (a *agent) closeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h, s := range a.socks {
		close(s.done)
		s.ep.Close()
		delete(a.socks, h)
	}
}

func opHello(a *agent, _ map[string]any) (result, *opError) {
	allow := make([]string, len(a.allowed))
	for i, n := range a.allowed {
		allow[i] = n.String()
	}
	return result{
		"protocol":       1,
		"implementation": "tcpconf-gvisor/1.0",
		"platform":       fmt.Sprintf("gVisor netstack %s (Debian golang-gvisor-gvisor-dev, %s)", stackVersion, runtime.Version()),
		"ops":            opNames,
		"pid":            os.Getpid(),
		"allow_connect":  allow,
	}, nil
}

// intValue accepts a JSON integer (json.Number without fraction or exponent).
func intValue(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok || strings.ContainsAny(string(n), ".eE") {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}
