/*
 * tcpconf_agent.c - portable upper-tester agent of the TCP conformance suite (docs/agent-protocol.md, v1).
 *
 * One C99 file, libc + BSD sockets only, single-threaded: every test socket is non-blocking; requests that
 * may wait (accept, connect, send, recv) become entries of a small table of pending operations, and one
 * poll() loop waits on the management stream and on the sockets of those entries until the nearest
 * deadline (protocol section 6, "single-threaded event loop").
 *
 * Builds (see Makefile, README.md):
 *   default          POSIX sockets; management stream = stdin/stdout, a TCP listener or a character device.
 *   -DTCPCONF_LWIP   test sockets are lwIP sockets (lwip_socket, lwip_poll, ...); the management stream stays a
 *                    host file descriptor; no main(): the host program brings lwIP up, then calls
 *                    tcpconf_agent_main(). Debian's lwIP has lwip_select compiled out, so poll() is the
 *                    readiness primitive in both builds.
 * Porting to another stack: change the S_* macros, plat_*() functions and wait_events() only.
 */
#define _GNU_SOURCE /* struct tcp_info (glibc and musl), MSG_NOSIGNAL */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifdef TCPCONF_LWIP
#include "lwip/opt.h"
enum { STACK_MSS = TCP_MSS }; /* before lwIP's posix headers pull in <netinet/tcp.h>, whose TCP_MSS is 512 */
#include "lwip/api.h"
#include "lwip/init.h"
#include "lwip/priv/sockets_priv.h" /* lwip_socket_dbg_get_socket(): an lwIP internal, see plat_pcb() */
#include "lwip/sockets.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"
#include "lwip/tcpip.h"
#ifndef TF_TIMESTAMP
#define TF_TIMESTAMP 0 /* flags of options compiled out of this lwIP */
#endif
#ifndef TF_SACK
#define TF_SACK 0
#endif
#define S_SOCKET lwip_socket
#define S_BIND lwip_bind
#define S_LISTEN lwip_listen
#define S_ACCEPT lwip_accept
#define S_CONNECT lwip_connect
#define S_SEND(fd, buf, len) lwip_send(fd, buf, len, 0)
#define S_RECV lwip_recv
#define S_SHUTDOWN lwip_shutdown
#define S_CLOSE lwip_close
#define S_SETSOCKOPT lwip_setsockopt
#define S_GETSOCKOPT lwip_getsockopt
#define S_GETSOCKNAME lwip_getsockname
#define S_GETPEERNAME lwip_getpeername
#define S_FCNTL lwip_fcntl
#define SLICE_MS 2 /* lwIP and host fds cannot share one poll(): alternate in slices this long */
#else
#include <netinet/tcp.h> /* TCP_NODELAY, TCP_INFO (lwIP brings its own TCP_NODELAY and TCP_MSS) */
#define S_SOCKET socket
#define S_BIND bind
#define S_LISTEN listen
#define S_ACCEPT accept
#define S_CONNECT connect
#define S_SEND(fd, buf, len) send(fd, buf, len, MSG_NOSIGNAL)
#define S_RECV recv
#define S_SHUTDOWN shutdown
#define S_CLOSE close
#define S_SETSOCKOPT setsockopt
#define S_GETSOCKOPT getsockopt
#define S_GETSOCKNAME getsockname
#define S_GETPEERNAME getpeername
#define S_FCNTL fcntl
#endif

#define AGENT_VERSION "1.0.0"
#define MAX_SOCKS 64
#define MAX_PENDING 64
#define MAX_MEMBERS 32
#define MAX_ALLOW 16
#define MAX_LINE (1 << 20)

enum op { OP_HELLO, OP_LISTEN, OP_ACCEPT, OP_CONNECT, OP_SEND, OP_RECV, OP_SHUTDOWN, OP_CLOSE, OP_ABORT, OP_STATE,
          OP_SOCKOPT, OP_BYE, OP_COUNT };
static const char *const OPS[OP_COUNT] = {"hello", "listen", "accept", "connect", "send", "recv", "shutdown",
                                          "close", "abort", "state", "sockopt", "bye"};
static const char PATTERN[] = "0123456789abcdef";

static void logmsg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "c-agent[%ld]: ", (long)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- growable output buffer and JSON writing ---------------------------------------------------------- */

struct buf { char *p; size_t len, cap; };

static void b_need(struct buf *b, size_t n) {
    if (b->len + n + 1 <= b->cap) return;
    while (b->len + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 256;
    if (!(b->p = realloc(b->p, b->cap))) { logmsg("out of memory"); exit(70); }
}

static void b_printf(struct buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    b_need(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void b_str(struct buf *b, const char *s, size_t n) { /* a JSON string literal */
    b_printf(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') b_printf(b, "\\%c", c);
        else if (c < 0x20) b_printf(b, "\\u%04x", c);
        else { b_need(b, 1); b->p[b->len++] = (char)c; }
    }
    b_printf(b, "\"");
}

static void b_base64(struct buf *b, const unsigned char *d, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    b_need(b, (n + 2) / 3 * 4 + 2);
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        *o++ = A[v >> 18 & 63];
        *o++ = A[v >> 12 & 63];
        *o++ = i + 1 < n ? A[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? A[v & 63] : '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
}

/* Strict base64 (RFC 4648 with padding); returns the decoded length or -1. Decodes in place is not needed. */
static long base64_decode(const char *s, size_t n, unsigned char *out) {
    if (n % 4) return -1;
    long len = 0;
    for (size_t i = 0; i < n; i += 4) {
        unsigned v = 0, pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = s[i + k];
            int x = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
                  : c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : c == '/' ? 63 : -1;
            if (c == '=' && i + 4 == n && k >= 2 && (k == 3 || s[i + 3] == '=')) { pad++; x = 0; }
            else if (x < 0 || pad) return -1;
            v = v << 6 | (unsigned)x;
        }
        out[len++] = (unsigned char)(v >> 16);
        if (pad < 2) out[len++] = (unsigned char)(v >> 8);
        if (pad < 1) out[len++] = (unsigned char)v;
    }
    return len;
}

/* ---- errors --------------------------------------------------------------------------------------------- */

static struct { const char *name; char msg[256]; long long sent; int with_sent; } E;

static int fail(const char *name, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(E.msg, sizeof E.msg, fmt, ap);
    va_end(ap);
    E.name = name;
    E.with_sent = 0;
    return -1;
}

#define N(e) {e, #e}
static const struct { int code; const char *name; } ERRNOS[] = {
    N(EPERM), N(ENOENT), N(EINTR), N(EIO), N(EBADF), N(EAGAIN), N(ENOMEM), N(EACCES), N(EFAULT), N(EBUSY),
    N(EEXIST), N(EINVAL), N(ENFILE), N(EMFILE), N(ENOSPC), N(EPIPE), N(ERANGE), N(ENOTSOCK), N(EDESTADDRREQ),
    N(EMSGSIZE), N(EPROTOTYPE), N(ENOPROTOOPT), N(EPROTONOSUPPORT), N(EOPNOTSUPP), N(ENOTSUP), N(EAFNOSUPPORT),
    N(EADDRINUSE), N(EADDRNOTAVAIL), N(ENETDOWN), N(ENETUNREACH), N(ENETRESET), N(ECONNABORTED),
    N(ECONNRESET), N(ENOBUFS), N(EISCONN), N(ENOTCONN), N(ETIMEDOUT), N(ECONNREFUSED), N(EHOSTUNREACH),
    N(EALREADY), N(EINPROGRESS), N(EWOULDBLOCK),
};

static const char *errno_name(int code) {
    static char other[16];
    for (size_t i = 0; i < sizeof ERRNOS / sizeof ERRNOS[0]; i++)
        if (ERRNOS[i].code == code) return ERRNOS[i].name;
    snprintf(other, sizeof other, "E%d", code);
    return other;
}

static int fail_errno(int code) { return fail(errno_name(code), "%s", strerror(code)); }

/* ---- a flat JSON object tokenizer (requests carry scalars only; nested values are skipped) ------------- */

enum jtype { J_NULL, J_BOOL, J_INT, J_NUM, J_STR, J_OTHER };
struct member { const char *key; int type; const char *s; size_t len; long long i; double d; };
struct request { struct member m[MAX_MEMBERS]; int n; };
struct parser { const char *p, *end; char *arena; int depth; };

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void skip_ws(struct parser *ps) {
    while (ps->p < ps->end && is_ws(*ps->p)) ps->p++;
}

static int hex4(const char *p, unsigned *v) {
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (x < 0) return -1;
        *v = *v << 4 | (unsigned)x;
    }
    return 0;
}

static char *put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { *o++ = (char)cp; }
    else if (cp < 0x800) { *o++ = (char)(0xC0 | cp >> 6); *o++ = (char)(0x80 | (cp & 63)); }
    else if (cp < 0x10000) { *o++ = (char)(0xE0 | cp >> 12); *o++ = (char)(0x80 | (cp >> 6 & 63));
                             *o++ = (char)(0x80 | (cp & 63)); }
    else { *o++ = (char)(0xF0 | cp >> 18); *o++ = (char)(0x80 | (cp >> 12 & 63));
           *o++ = (char)(0x80 | (cp >> 6 & 63)); *o++ = (char)(0x80 | (cp & 63)); }
    return o;
}

/* Decodes a string literal into the arena (never longer than its source); ps->p is at the opening quote. */
static int parse_string(struct parser *ps, const char **out, size_t *len) {
    char *start = ps->arena, *o = start;
    for (ps->p++; ps->p < ps->end; ps->p++) {
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"') {
            ps->p++;
            *len = (size_t)(o - start);
            *o++ = '\0';
            ps->arena = o;
            *out = start;
            return 0;
        }
        if (c < 0x20) return -1;
        if (c != '\\') { *o++ = (char)c; continue; }
        if (++ps->p >= ps->end) return -1;
        const char *esc = strchr("\"\\/bfnrt", *ps->p), *val = "\"\\/\b\f\n\r\t";
        if (*ps->p && esc) { *o++ = val[esc - "\"\\/bfnrt"]; continue; }
        unsigned cp, lo;
        if (*ps->p != 'u' || ps->end - ps->p < 5 || hex4(ps->p + 1, &cp)) return -1;
        ps->p += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && ps->end - ps->p >= 7 && ps->p[1] == '\\' && ps->p[2] == 'u' &&
            !hex4(ps->p + 3, &lo) && lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            ps->p += 6;
        }
        o = put_utf8(o, cp);
    }
    return -1;
}

static int literal(struct parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n)) return -1;
    ps->p += n;
    return 0;
}

static int parse_value(struct parser *ps, struct member *m) {
    struct member tmp;
    if (!m) m = &tmp;
    skip_ws(ps);
    if (ps->p >= ps->end) return -1;
    char c = *ps->p;
    if (c == '"') { m->type = J_STR; return parse_string(ps, &m->s, &m->len); }
    if (c == '{' || c == '[') { /* nested: only unknown members can be like this; skip it */
        char close = c == '{' ? '}' : ']';
        m->type = J_OTHER;
        if (++ps->depth > 64) return -1;
        ps->p++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == close) { ps->p++; ps->depth--; return 0; }
        for (;;) {
            if (c == '{') {
                const char *k; size_t kl;
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != '"' || parse_string(ps, &k, &kl)) return -1;
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p++ != ':') return -1;
            }
            if (parse_value(ps, NULL)) return -1;
            skip_ws(ps);
            if (ps->p >= ps->end) return -1;
            if (*ps->p == close) { ps->p++; ps->depth--; return 0; }
            if (*ps->p++ != ',') return -1;
        }
    }
    if (!literal(ps, "true")) { m->type = J_BOOL; m->i = 1; return 0; }
    if (!literal(ps, "false")) { m->type = J_BOOL; m->i = 0; return 0; }
    if (!literal(ps, "null")) { m->type = J_NULL; return 0; }
    const char *start = ps->p;
    if (!literal(ps, "NaN") || !literal(ps, "Infinity") || !literal(ps, "-Infinity")) { /* as Python's json */
        m->type = J_NUM;
        m->d = strtod(*start == 'N' ? "NAN" : *start == '-' ? "-INF" : "INF", NULL);
        return 0;
    }
    int integer = 1;
    while (ps->p < ps->end && strchr("+-0123456789.eE", *ps->p) && *ps->p) {
        if (strchr(".eE", *ps->p)) integer = 0;
        ps->p++;
    }
    if (ps->p == start || ps->p - start > 60) return -1;
    char num[64], *endp;
    memcpy(num, start, (size_t)(ps->p - start));
    num[ps->p - start] = '\0';
    errno = 0;
    m->type = J_INT;
    m->i = strtoll(num, &endp, 10);
    if (!integer || errno == ERANGE) { m->type = J_NUM; m->d = strtod(num, &endp); }
    return *endp ? -1 : 0;
}

/* Parses one line; the arena must hold len + 1 bytes. */
static int parse_request(const char *line, size_t len, char *arena, struct request *rq) {
    struct parser ps = {line, line + len, arena, 0};
    rq->n = 0;
    skip_ws(&ps);
    if (ps.p >= ps.end || *ps.p++ != '{') return -1;
    skip_ws(&ps);
    if (ps.p < ps.end && *ps.p == '}') ps.p++;
    else for (;;) {
        struct member *m = &rq->m[rq->n];
        size_t kl;
        skip_ws(&ps);
        if (rq->n == MAX_MEMBERS || ps.p >= ps.end || *ps.p != '"' || parse_string(&ps, &m->key, &kl)) return -1;
        skip_ws(&ps);
        if (ps.p >= ps.end || *ps.p++ != ':' || parse_value(&ps, m)) return -1;
        rq->n++;
        skip_ws(&ps);
        if (ps.p >= ps.end) return -1;
        if (*ps.p == '}') { ps.p++; break; }
        if (*ps.p++ != ',') return -1;
    }
    skip_ws(&ps);
    return ps.p == ps.end ? 0 : -1;
}

/* The last member named key (JSON duplicates: last wins), or NULL when absent or null. */
static const struct member *get(const struct request *rq, const char *key) {
    for (int k = rq->n - 1; k >= 0; k--)
        if (!strcmp(rq->m[k].key, key)) return rq->m[k].type == J_NULL ? NULL : &rq->m[k];
    return NULL;
}

static int arg_int(const struct request *rq, const char *key, int required, long long dflt, long long *v) {
    const struct member *m = get(rq, key);
    if (!m) { *v = dflt; return required ? fail("EINVAL", "missing argument '%s'", key) : 0; }
    if (m->type != J_INT) return fail("EINVAL", "argument '%s' has the wrong type", key);
    *v = m->i;
    return 0;
}

static int arg_str(const struct request *rq, const char *key, int required, const char *dflt, const char **v) {
    const struct member *m = get(rq, key);
    if (!m) { *v = dflt; return required ? fail("EINVAL", "missing argument '%s'", key) : 0; }
    if (m->type != J_STR) return fail("EINVAL", "argument '%s' has the wrong type", key);
    *v = m->s;
    return 0;
}

static int arg_port(const struct request *rq, const char *key, int required, long long dflt, long long *v) {
    if (arg_int(rq, key, required, dflt, v)) return -1;
    if (*v != dflt && (*v < 0 || *v > 65535)) return fail("EINVAL", "%s %lld is out of range", key, *v);
    return 0;
}

static int arg_family(const struct request *rq, int *af) {
    const char *f;
    if (arg_str(rq, "family", 1, NULL, &f)) return -1;
    if (!strcmp(f, "ipv4")) *af = AF_INET;
    else if (!strcmp(f, "ipv6")) *af = AF_INET6;
    else return fail("EINVAL", "family must be ipv4 or ipv6");
    return 0;
}

static int arg_deadline(const struct request *rq, double dflt_ms, double *deadline) {
    const struct member *m = get(rq, "timeout_ms");
    double ms = !m ? dflt_ms : m->type == J_INT ? (double)m->i : m->type == J_NUM ? m->d : -1;
    if (m && m->type != J_INT && m->type != J_NUM) return fail("EINVAL", "argument 'timeout_ms' has the wrong type");
    if (!(ms >= 0 && ms < 1e12)) return fail("EINVAL", "timeout_ms must be a finite, non-negative number");
    *deadline = now_ms() + ms;
    return 0;
}

/* ---- configuration and session state ------------------------------------------------------------------- */

struct net { int af, bits; unsigned char a[16]; };
static struct { const char *token; struct net allow[MAX_ALLOW]; int nallow, close_on_reject; } cfg;

struct slot { long long handle; int fd; struct sockaddr_in6 local, peer; }; /* endpoints of a connection */
struct pending {
    int used, op, fd, pfd; /* pfd: index in this round's pollfd array, -1 if none */
    long long id, handle;  /* handle -1: a connect whose socket has no handle yet */
    double deadline;
    unsigned char *buf;
    size_t len, done;
};
static struct {
    int in, out, authenticated, rejected, ending;
    long long next_handle;
    struct slot slots[MAX_SOCKS];
    struct pending pend[MAX_PENDING];
    struct buf res; /* result members of the request being answered, each starting with ',' */
} S;

static int parse_net(const char *text, struct net *n) {
    char addr[64];
    const char *slash = strchr(text, '/');
    size_t len = slash ? (size_t)(slash - text) : strlen(text);
    if (len >= sizeof addr) return -1;
    memcpy(addr, text, len);
    addr[len] = '\0';
    n->af = inet_pton(AF_INET, addr, n->a) == 1 ? AF_INET : inet_pton(AF_INET6, addr, n->a) == 1 ? AF_INET6 : 0;
    int max = n->af == AF_INET ? 32 : 128;
    char *end;
    n->bits = slash ? (int)strtol(slash + 1, &end, 10) : max;
    if (!n->af || (slash && (*end || !slash[1])) || n->bits < 0 || n->bits > max) return -1;
    for (int b = n->bits; b < max; b++) n->a[b / 8] &= (unsigned char)~(0x80 >> (b % 8)); /* host bits off */
    return 0;
}

static int allowed(int af, const unsigned char *a) {
    for (int k = 0; k < cfg.nallow; k++) {
        const struct net *n = &cfg.allow[k];
        int b = 0;
        if (n->af != af) continue;
        while (b < n->bits && !((a[b / 8] ^ n->a[b / 8]) & (0x80 >> (b % 8)))) b++;
        if (b == n->bits) return 1;
    }
    return 0;
}

static int token_matches(const struct member *m) {
    if (!m || m->type != J_STR || strlen(cfg.token) != m->len) return 0;
    unsigned char diff = 0;
    for (size_t i = 0; i < m->len; i++) diff |= (unsigned char)(m->s[i] ^ cfg.token[i]); /* constant time */
    return diff == 0;
}

static struct slot *find_slot(long long handle) {
    for (int k = 0; k < MAX_SOCKS; k++)
        if (S.slots[k].fd >= 0 && S.slots[k].handle == handle) return &S.slots[k];
    return NULL;
}

static int handle_arg(const struct request *rq, struct slot **sl) {
    long long h;
    if (arg_int(rq, "sock", 1, 0, &h)) return -1;
    if (!(*sl = find_slot(h))) return fail("EBADF", "no open socket with handle %lld", h);
    return 0;
}

static struct slot *add_slot(int fd) {
    for (int k = 0; k < MAX_SOCKS; k++)
        if (S.slots[k].fd < 0) {
            memset(&S.slots[k], 0, sizeof S.slots[k]);
            S.slots[k].fd = fd;
            S.slots[k].handle = S.next_handle++;
            return &S.slots[k];
        }
    fail("EMFILE", "too many open sockets");
    return NULL;
}

/* ---- responses ----------------------------------------------------------------------------------------- */

static void emit(const struct buf *b) {
    for (size_t off = 0; off < b->len;) {
        ssize_t n = write(S.out, b->p + off, b->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return; /* the client is gone; the reader sees the end of its input */
        off += (size_t)n;
    }
}

static void reply(long long id, int have_id, int ok) {
    struct buf b = {0};
    if (have_id) b_printf(&b, "{\"id\":%lld,\"ok\":", id);
    else b_printf(&b, "{\"id\":null,\"ok\":");
    if (ok) b_printf(&b, "true%.*s}\n", (int)S.res.len, S.res.p ? S.res.p : "");
    else {
        b_printf(&b, "false,\"error\":\"%s\",\"message\":", E.name);
        b_str(&b, E.msg, strlen(E.msg));
        if (E.with_sent) b_printf(&b, ",\"sent\":%lld", E.sent);
        b_printf(&b, "}\n");
    }
    emit(&b);
    free(b.p);
    S.res.len = 0;
}

static void res_endpoint(const char *name, const struct sockaddr_in6 *ss) {
    char text[INET6_ADDRSTRLEN] = "";
    int port = 0;
    if (ss->sin6_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof text);
        port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const void *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, text, sizeof text);
        port = ntohs(s4->sin_port);
    }
    b_printf(&S.res, ",\"%s\":[\"%s\",%d]", name, text, port);
}

static void res_names(struct slot *sl) { /* also remembered: lwIP's state lookup needs them, see plat_state */
    socklen_t len = sizeof sl->local;
    S_GETSOCKNAME(sl->fd, (struct sockaddr *)&sl->local, &len);
    res_endpoint("local", &sl->local);
    len = sizeof sl->peer;
    if (S_GETPEERNAME(sl->fd, (struct sockaddr *)&sl->peer, &len) == 0) res_endpoint("peer", &sl->peer);
}

/* ---- the platform: names, TCP state, abort -------------------------------------------------------------- */

static const char *const STATES[] = {"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED",
                                     "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"};

static void plat_describe(struct buf *b) { /* hello's platform member and platform-specific extras */
    struct utsname u;
    char host[200] = "unknown";
    if (uname(&u) == 0) snprintf(host, sizeof host, "%s-%s-%s", u.sysname, u.release, u.machine);
#ifdef TCPCONF_LWIP
#ifndef LWIP_TCP_SACK_OUT
#define LWIP_TCP_SACK_OUT 0
#endif
    int wscale = LWIP_WND_SCALE ? TCP_RCV_SCALE : -1;
    b_printf(b, ",\"platform\":\"lwIP %s (%s; TCP_MSS %d, TCP_WND %d, window scaling %s, SACK %s, timestamps %s)\"",
             LWIP_VERSION_STRING, host, STACK_MSS, TCP_WND, LWIP_WND_SCALE ? "on" : "off",
             LWIP_TCP_SACK_OUT ? "on" : "off", LWIP_TCP_TIMESTAMPS ? "on" : "off");
    b_printf(b, ",\"stack_options\":{\"mss\":%d,\"wnd\":%d,\"wscale\":%d,\"sack\":%s,\"timestamps\":%s}", STACK_MSS,
             TCP_WND, wscale, LWIP_TCP_SACK_OUT ? "true" : "false", LWIP_TCP_TIMESTAMPS ? "true" : "false");
#else
    b_printf(b, ",\"platform\":");
    b_str(b, host, strlen(host));
#endif
}

static void res_options(int bits) {
    static const char *const names[] = {"timestamps", "sack", "wscale", "ecn"};
    b_printf(&S.res, ",\"options\":[");
    for (int k = 0, first = 1; k < 4; k++)
        if (bits & 1 << k) { b_printf(&S.res, "%s\"%s\"", first ? "" : ",", names[k]); first = 0; }
    b_printf(&S.res, "],\"options_raw\":%d", bits);
}

#ifdef TCPCONF_LWIP
/* lwIP exposes no TCP state through its socket API, so the agent reads it from the connection's pcb:
 * lwip_socket_dbg_get_socket() (sockets_priv.h) maps the fd to its struct lwip_sock, whose netconn holds the
 * tcp_pcb. Both are lwIP internals, read with the core lock held (LWIP_TCPIP_CORE_LOCKING=1 in this build). */
static struct tcp_pcb *plat_pcb(int fd, int *found) {
    struct lwip_sock *sock = lwip_socket_dbg_get_socket(fd);
    *found = sock && sock->conn && NETCONNTYPE_GROUP(netconn_type(sock->conn)) == NETCONN_TCP;
    return *found ? sock->conn->pcb.tcp : NULL;
}

/* Whether pcb carries the connection of slot sl (same ports and remote address). */
static int pcb_matches(const struct tcp_pcb *pcb, const struct slot *sl) {
    const struct sockaddr_in *r4 = (const void *)&sl->peer;
    if (!sl->peer.sin6_port || pcb->local_port != ntohs(sl->local.sin6_port) ||
        pcb->remote_port != ntohs(sl->peer.sin6_port))
        return 0;
    if (sl->peer.sin6_family == AF_INET)
        return IP_IS_V4_VAL(pcb->remote_ip) && ip_2_ip4(&pcb->remote_ip)->addr == r4->sin_addr.s_addr;
    return IP_IS_V6_VAL(pcb->remote_ip) && !memcmp(ip_2_ip6(&pcb->remote_ip)->addr, &sl->peer.sin6_addr, 16);
}

/* When the socket layer has let go of its pcb (lwIP does so on close, and on shutdown(SHUT_WR) after the
 * application read end-of-file), the connection may live on in LAST-ACK or TIME-WAIT: find it in lwIP's
 * active and time-wait lists (internals from tcp_priv.h) by its endpoints. Not found means CLOSED. */
static struct tcp_pcb *detached_pcb(const struct slot *sl) {
    for (struct tcp_pcb *pcb = tcp_active_pcbs; pcb; pcb = pcb->next)
        if (pcb_matches(pcb, sl)) return pcb;
    for (struct tcp_pcb *pcb = tcp_tw_pcbs; pcb; pcb = pcb->next)
        if (pcb_matches(pcb, sl)) return pcb;
    return NULL;
}

static void plat_state(const struct slot *sl) {
    int found, code = -1, opts = 0;
    LOCK_TCPIP_CORE();
    struct tcp_pcb *pcb = plat_pcb(sl->fd, &found);
    struct tcp_pcb copy;
    if (found && !pcb) pcb = detached_pcb(sl);
    if (pcb) code = pcb->state;
    if (pcb && code != LISTEN) memcpy(&copy, pcb, sizeof copy); /* a listen pcb is a smaller struct */
    UNLOCK_TCPIP_CORE();
    if (!found) { b_printf(&S.res, ",\"state\":\"UNKNOWN\",\"info\":{}"); return; }
    if (!pcb) code = CLOSED; /* reset, aborted, or closed and gone */
    b_printf(&S.res, ",\"state\":\"%s\",\"info\":{\"state_code\":%d", STATES[code], code);
    if (pcb && code != LISTEN) {
        opts = (copy.flags & TF_TIMESTAMP ? 1 : 0) | (copy.flags & TF_SACK ? 2 : 0);
#if LWIP_WND_SCALE
        opts |= copy.flags & TF_WND_SCALE ? 4 : 0;
        b_printf(&S.res, ",\"snd_wscale\":%d,\"rcv_wscale\":%d", copy.snd_scale, copy.rcv_scale);
#endif
        res_options(opts);
        b_printf(&S.res, ",\"snd_mss\":%d,\"rto\":%ld", copy.mss, (long)copy.rto * TCP_SLOW_INTERVAL * 1000L);
    }
    b_printf(&S.res, "}");
}

static void plat_abort(int fd) { /* lwIP's linger 0 resets only with unsent data: use tcp_abort, as sec. 5.9 asks */
    int found;
    LOCK_TCPIP_CORE();
    struct tcp_pcb *pcb = plat_pcb(fd, &found);
    if (pcb && pcb->state != LISTEN && pcb->state != CLOSED) tcp_abort(pcb); /* the netconn's err callback
                                                                                drops its pcb pointer */
    UNLOCK_TCPIP_CORE();
    S_CLOSE(fd);
}
#else
static void plat_state(const struct slot *sl) {
    int fd = sl->fd;
#if defined(__linux__) && defined(TCP_INFO)
    static const int LINUX_TO_RFC[] = {-1, 4, 2, 3, 5, 6, 10, 0, 7, 9, 1, 8}; /* tcpi_state -> STATES index */
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (S_GETSOCKOPT(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state >= 1 && ti.tcpi_state <= 11) {
        b_printf(&S.res, ",\"state\":\"%s\",\"info\":{\"state_code\":%d", STATES[LINUX_TO_RFC[ti.tcpi_state]],
                 ti.tcpi_state);
        res_options(ti.tcpi_options);
        b_printf(&S.res, ",\"snd_wscale\":%d,\"rcv_wscale\":%d,\"ca_state\":%d,\"retransmits\":%d,\"backoff\":%d",
                 ti.tcpi_snd_wscale, ti.tcpi_rcv_wscale, ti.tcpi_ca_state, ti.tcpi_retransmits, ti.tcpi_backoff);
        b_printf(&S.res, ",\"rto\":%u,\"ato\":%u,\"snd_mss\":%u,\"rcv_mss\":%u,\"unacked\":%u,\"retrans\":%u,"
                 "\"pmtu\":%u,\"rtt\":%u,\"rttvar\":%u,\"snd_cwnd\":%u,\"total_retrans\":%u}", ti.tcpi_rto,
                 ti.tcpi_ato, ti.tcpi_snd_mss, ti.tcpi_rcv_mss, ti.tcpi_unacked, ti.tcpi_retrans, ti.tcpi_pmtu,
                 ti.tcpi_rtt, ti.tcpi_rttvar, ti.tcpi_snd_cwnd, ti.tcpi_total_retrans);
        return;
    }
#endif
    (void)fd;
    b_printf(&S.res, ",\"state\":\"UNKNOWN\",\"info\":{}");
}

static void plat_abort(int fd) {
    struct linger lg = {1, 0};
    S_SETSOCKOPT(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    S_CLOSE(fd);
}
#endif

/* ---- sockets ------------------------------------------------------------------------------------------- */

static int set_option(int fd, const char *name, const struct member *v) {
    int on, rc;
    if (!strcmp(name, "nodelay") || !strcmp(name, "keepalive")) {
        if (!v || v->type != J_BOOL) return fail("EINVAL", "%s takes true or false", name);
        on = (int)v->i;
        rc = name[0] == 'n' ? S_SETSOCKOPT(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on)
                            : S_SETSOCKOPT(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    } else if (!strcmp(name, "rcvbuf") || !strcmp(name, "sndbuf")) {
        if (!v || v->type != J_INT || v->i <= 0 || v->i > 0x7fffffff)
            return fail("EINVAL", "%s takes a positive number of bytes", name);
        on = (int)v->i;
        rc = S_SETSOCKOPT(fd, SOL_SOCKET, name[0] == 'r' ? SO_RCVBUF : SO_SNDBUF, &on, sizeof on);
    } else if (!strcmp(name, "linger")) {
        struct linger lg = {0, 0};
        if (v && !(v->type == J_BOOL && !v->i) && !(v->type == J_INT && v->i >= 0 && v->i <= 0x7fffffff))
            return fail("EINVAL", "linger takes null (off) or a number of seconds");
        if (v && v->type == J_INT) { lg.l_onoff = 1; lg.l_linger = (int)v->i; }
        rc = S_SETSOCKOPT(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    } else {
        return fail("EINVAL", "unknown socket option '%s'", name);
    }
    if (rc != 0) return errno == ENOPROTOOPT ? fail("ENOTSUP", "%s: not supported here", name) : fail_errno(errno);
    return 0;
}

/* A non-blocking TCP socket with the request's rcvbuf/sndbuf/nodelay applied before bind or SYN. */
static int new_socket(int af, const struct request *rq, int *fd) {
    static const char *const opts[] = {"rcvbuf", "sndbuf", "nodelay"};
    int on = 1;
    if ((*fd = S_SOCKET(af, SOCK_STREAM, 0)) < 0) return fail_errno(errno);
    if (af == AF_INET6) S_SETSOCKOPT(*fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    S_SETSOCKOPT(*fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    for (int k = 0; k < 3; k++)
        if (get(rq, opts[k]) && set_option(*fd, opts[k], get(rq, opts[k]))) { S_CLOSE(*fd); return -1; }
    if (S_FCNTL(*fd, F_SETFL, O_NONBLOCK) < 0) { int e = errno; S_CLOSE(*fd); return fail_errno(e); }
    return 0;
}

static int make_addr(int af, const char *text, long long port, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof *ss);
    if (af == AF_INET6) {
        struct sockaddr_in6 *s6 = (void *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((unsigned short)port);
        *len = sizeof *s6;
        if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) return 0;
    } else {
        struct sockaddr_in *s4 = (void *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((unsigned short)port);
        *len = sizeof *s4;
        if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) return 0;
    }
    return fail("EINVAL", "'%s' is not a numeric IP address of this family", text);
}

/* ---- pending (blocking) operations --------------------------------------------------------------------- */

static void finish(struct pending *p, int ok) {
    reply(p->id, 1, ok);
    free(p->buf);
    memset(p, 0, sizeof *p);
}

static int would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == EINPROGRESS; }

/* Answers an accept or connect with the new connection's handle and endpoints (err: it failed). */
static void connected(struct pending *p, int fd, int err) {
    struct slot *sl = err ? NULL : add_slot(fd);
    if (!sl) {
        S_CLOSE(fd);
        if (err) fail_errno(err);
        finish(p, 0);
        return;
    }
    b_printf(&S.res, ",\"sock\":%lld", sl->handle);
    res_names(sl);
    finish(p, 1);
}

/* Try to complete a pending operation without blocking; answers it when it completed or failed. */
static void progress(struct pending *p, short revents) {
    long n;
    int fd, err = 0;
    socklen_t len = sizeof err;
    switch (p->op) {
    case OP_ACCEPT:
        if ((fd = S_ACCEPT(p->fd, NULL, NULL)) >= 0 && S_FCNTL(fd, F_SETFL, O_NONBLOCK) >= 0) connected(p, fd, 0);
        else if (fd >= 0) connected(p, fd, errno);
        else if (!would_block(errno) && errno != ECONNABORTED) { fail_errno(errno); finish(p, 0); }
        return;
    case OP_CONNECT: /* finished when the socket turns writable (or fails); SO_ERROR tells which */
        if (!(revents & (POLLOUT | POLLERR | POLLHUP))) return;
        if (S_GETSOCKOPT(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err == EINPROGRESS || err == EALREADY) return;
#ifdef TCPCONF_LWIP
        if (err == ECONNRESET) err = ECONNREFUSED; /* lwIP reports a RST to its SYN as ERR_RST */
#endif
        connected(p, p->fd, err);
        return;
    case OP_SEND:
        while (p->done < p->len) {
            if ((n = S_SEND(p->fd, p->buf + p->done, p->len - p->done)) < 0) {
                if (would_block(errno)) return;
                fail_errno(errno);
                finish(p, 0);
                return;
            }
            p->done += (size_t)n;
        }
        b_printf(&S.res, ",\"sent\":%zu", p->done);
        finish(p, 1);
        return;
    case OP_RECV:
        if ((n = S_RECV(p->fd, p->buf, p->len, 0)) < 0) {
            if (!would_block(errno)) { fail_errno(errno); finish(p, 0); }
            return;
        }
        b_printf(&S.res, ",\"data_b64\":");
        b_base64(&S.res, p->buf, (size_t)n);
        b_printf(&S.res, ",\"len\":%ld,\"eof\":%s", n, n ? "false" : "true");
        finish(p, 1);
        return;
    }
}

static struct pending *new_pending(long long id, int op, int fd, long long handle, double deadline) {
    for (int k = 0; k < MAX_PENDING; k++)
        if (!S.pend[k].used) {
            struct pending *p = &S.pend[k];
            *p = (struct pending){1, op, fd, -1, id, handle, deadline, NULL, 0, 0};
            return p;
        }
    fail("EIO", "too many outstanding requests");
    return NULL;
}

static void cancel_pending(long long handle) { /* the socket was closed: end its waiting requests */
    for (int k = 0; k < MAX_PENDING; k++)
        if (S.pend[k].used && S.pend[k].handle == handle) {
            fail("EBADF", "the socket was closed while waiting");
            finish(&S.pend[k], 0);
        }
}

/* ---- operations: return 0 (answer ok with S.res), -1 (answer E), 1 (answered or pending) --------------- */

static int op_hello(const struct request *rq) {
    (void)rq;
    b_printf(&S.res, ",\"protocol\":1,\"implementation\":\"c-agent/" AGENT_VERSION "\"");
    plat_describe(&S.res);
    b_printf(&S.res, ",\"pid\":%ld,\"ops\":[", (long)getpid());
    for (int k = 0; k < OP_COUNT; k++) b_printf(&S.res, "%s\"%s\"", k ? "," : "", OPS[k]);
    b_printf(&S.res, "],\"allow_connect\":[");
    for (int k = 0; k < cfg.nallow; k++) {
        char text[INET6_ADDRSTRLEN];
        inet_ntop(cfg.allow[k].af, cfg.allow[k].a, text, sizeof text);
        b_printf(&S.res, "%s\"%s/%d\"", k ? "," : "", text, cfg.allow[k].bits);
    }
    b_printf(&S.res, "]");
    return 0;
}

static int op_listen(const struct request *rq) {
    int af, fd;
    const char *addr;
    long long port = 0, backlog = 0;
    struct sockaddr_storage ss;
    socklen_t len;
    if (arg_family(rq, &af) || arg_str(rq, "addr", 0, af == AF_INET ? "0.0.0.0" : "::", &addr) ||
        arg_port(rq, "port", 0, 0, &port) || arg_int(rq, "backlog", 0, 16, &backlog) ||
        make_addr(af, addr, port, &ss, &len) || new_socket(af, rq, &fd))
        return -1;
    if (S_BIND(fd, (struct sockaddr *)&ss, len) || S_LISTEN(fd, (int)backlog)) {
        int e = errno;
        S_CLOSE(fd);
        return fail_errno(e);
    }
    len = sizeof ss;
    S_GETSOCKNAME(fd, (struct sockaddr *)&ss, &len);
    struct slot *sl = add_slot(fd);
    if (!sl) { S_CLOSE(fd); return -1; }
    b_printf(&S.res, ",\"sock\":%lld,\"port\":%d", sl->handle, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    return 0;
}

static int op_accept(long long id, const struct request *rq) {
    struct slot *sl;
    double deadline;
    struct pending *p;
    if (handle_arg(rq, &sl) || arg_deadline(rq, 5000, &deadline) ||
        !(p = new_pending(id, OP_ACCEPT, sl->fd, sl->handle, deadline)))
        return -1;
    progress(p, 0);
    return 1;
}

static int op_connect(long long id, const struct request *rq) {
    int af, fd;
    const char *addr, *laddr;
    long long port = 0, lport = -1;
    double deadline;
    struct sockaddr_storage peer, local;
    socklen_t plen, llen;
    struct pending *p;
    if (arg_family(rq, &af) || arg_str(rq, "addr", 1, NULL, &addr) || arg_port(rq, "port", 1, 0, &port) ||
        arg_str(rq, "local_addr", 0, NULL, &laddr) || arg_port(rq, "local_port", 0, -1, &lport) ||
        arg_deadline(rq, 5000, &deadline))
        return -1;
    if (make_addr(af, addr, port, &peer, &plen)) return -1;
    if (!allowed(af, af == AF_INET ? (void *)&((struct sockaddr_in *)&peer)->sin_addr
                                   : (void *)&((struct sockaddr_in6 *)&peer)->sin6_addr))
        return fail("EPERM", "connect to %s is not allowed (see --allow-connect)", addr);
    if ((laddr || lport >= 0) && make_addr(af, laddr ? laddr : af == AF_INET ? "0.0.0.0" : "::",
                                           lport >= 0 ? lport : 0, &local, &llen))
        return -1;
    if (new_socket(af, rq, &fd)) return -1;
    if ((laddr || lport >= 0) && S_BIND(fd, (struct sockaddr *)&local, llen)) {
        int e = errno;
        S_CLOSE(fd);
        return fail_errno(e);
    }
    if (S_CONNECT(fd, (struct sockaddr *)&peer, plen) && !would_block(errno)) {
        int e = errno;
        S_CLOSE(fd);
        return fail_errno(e == ECONNRESET ? ECONNREFUSED : e);
    }
    if (!(p = new_pending(id, OP_CONNECT, fd, -1, deadline))) { S_CLOSE(fd); return -1; }
    return 1; /* completion is seen as writability in the main loop */
}

static int op_send(long long id, const struct request *rq) {
    struct slot *sl;
    const struct member *d = get(rq, "data"), *b = get(rq, "data_b64"), *l = get(rq, "len");
    double deadline;
    struct pending *p;
    if (handle_arg(rq, &sl)) return -1;
    if ((d != NULL) + (b != NULL) + (l != NULL) != 1)
        return fail("EINVAL", "send needs exactly one of data, data_b64 and len");
    if ((d && d->type != J_STR) || (b && b->type != J_STR) || (l && l->type != J_INT))
        return fail("EINVAL", "send data has the wrong type");
    if (l && (l->i < 0 || l->i > (1LL << 30))) return fail("EINVAL", "len must be between 0 and 2^30");
    if (arg_deadline(rq, 10000, &deadline) || !(p = new_pending(id, OP_SEND, sl->fd, sl->handle, deadline)))
        return -1;
    p->len = d ? d->len : b ? b->len : (size_t)l->i;
    if (!(p->buf = malloc(p->len + 1))) { p->used = 0; return fail("ENOMEM", "no memory for %zu bytes", p->len); }
    if (d) memcpy(p->buf, d->s, d->len);
    else if (l) for (size_t i = 0; i < p->len; i++) p->buf[i] = (unsigned char)PATTERN[i % 16];
    else {
        long n = base64_decode(b->s, b->len, p->buf);
        if (n < 0) { free(p->buf); memset(p, 0, sizeof *p); return fail("EINVAL", "data_b64 is not base64"); }
        p->len = (size_t)n;
    }
    progress(p, 0);
    return 1;
}

static int op_recv(long long id, const struct request *rq) {
    struct slot *sl;
    long long max = 0;
    double deadline;
    struct pending *p;
    if (handle_arg(rq, &sl) || arg_int(rq, "max", 0, 65536, &max)) return -1;
    if (max <= 0) return fail("EINVAL", "max must be positive");
    if (max > (1 << 24)) max = 1 << 24;
    if (arg_deadline(rq, 2000, &deadline) || !(p = new_pending(id, OP_RECV, sl->fd, sl->handle, deadline))) return -1;
    if (!(p->buf = malloc((size_t)max))) { p->used = 0; return fail("ENOMEM", "no memory for %lld bytes", max); }
    p->len = (size_t)max;
    progress(p, 0);
    return 1;
}

static int op_shutdown(const struct request *rq) {
    struct slot *sl;
    const char *how;
    if (handle_arg(rq, &sl) || arg_str(rq, "how", 1, NULL, &how)) return -1;
    int h = !strcmp(how, "rd") ? SHUT_RD : !strcmp(how, "wr") ? SHUT_WR : !strcmp(how, "rdwr") ? SHUT_RDWR : -1;
    if (h < 0) return fail("EINVAL", "how must be rd, wr or rdwr");
    return S_SHUTDOWN(sl->fd, h) ? fail_errno(errno) : 0;
}

static int op_close(const struct request *rq, int abort) {
    struct slot *sl;
    if (handle_arg(rq, &sl)) return -1;
    int fd = sl->fd;
    sl->fd = -1;
    cancel_pending(sl->handle);
    if (abort) plat_abort(fd);
    else S_CLOSE(fd); /* a lingering close blocks this single-threaded agent for up to its linger time */
    return 0;
}

static int op_state(const struct request *rq) {
    struct slot *sl;
    if (handle_arg(rq, &sl)) return -1;
    plat_state(sl);
    return 0;
}

static int op_sockopt(const struct request *rq) {
    struct slot *sl;
    const char *name;
    if (handle_arg(rq, &sl) || arg_str(rq, "name", 1, NULL, &name)) return -1;
    return set_option(sl->fd, name, get(rq, "value"));
}

/* ---- request dispatch and the event loop --------------------------------------------------------------- */

static void handle_line(char *line, size_t len) {
    struct request rq;
    while (len && is_ws(line[len - 1])) len--;
    while (len && is_ws(*line)) { line++; len--; }
    if (!len) return;
    char *arena = malloc(len + 1);
    if (!arena || parse_request(line, len, arena, &rq)) {
        fail("EINVAL", "malformed request: not a flat JSON object");
        reply(0, 0, 0);
        free(arena);
        return;
    }
    const struct member *idm = get(&rq, "id"), *opm = get(&rq, "op");
    int have_id = idm && idm->type == J_INT, op = OP_COUNT, rc;
    long long id = have_id ? idm->i : 0;
    for (int k = 0; opm && opm->type == J_STR && k < OP_COUNT; k++)
        if (!strcmp(opm->s, OPS[k])) op = k;
    if (!S.authenticated) {
        if (S.rejected || op != OP_HELLO || !token_matches(get(&rq, "token"))) {
            S.rejected = 1;
            S.ending = cfg.close_on_reject;
            rc = fail("EACCES", "the first request must be hello with the agent's token");
            goto answer;
        }
        S.authenticated = 1;
    }
    if (!have_id) rc = fail("EINVAL", "the request id must be an integer");
    else if (op == OP_COUNT)
        rc = fail("EINVAL", "unknown op '%s'; known ops: hello, listen, accept, connect, send, recv, shutdown, "
                  "close, abort, state, sockopt, bye", opm && opm->type == J_STR ? opm->s : "?");
    else switch (op) {
    case OP_HELLO: rc = op_hello(&rq); break;
    case OP_LISTEN: rc = op_listen(&rq); break;
    case OP_ACCEPT: rc = op_accept(id, &rq); break;
    case OP_CONNECT: rc = op_connect(id, &rq); break;
    case OP_SEND: rc = op_send(id, &rq); break;
    case OP_RECV: rc = op_recv(id, &rq); break;
    case OP_SHUTDOWN: rc = op_shutdown(&rq); break;
    case OP_CLOSE: rc = op_close(&rq, 0); break;
    case OP_ABORT: rc = op_close(&rq, 1); break;
    case OP_STATE: rc = op_state(&rq); break;
    case OP_SOCKOPT: rc = op_sockopt(&rq); break;
    default: rc = 0; S.ending = 1; break; /* bye */
    }
answer:
    if (rc <= 0) reply(id, have_id, rc == 0);
    free(arena);
}

/* Waits until the management stream (pfds[0]) or a socket (pfds[1..n]) is ready, or timeout_ms (-1: none). */
static void wait_events(struct pollfd *pfds, int n, int timeout_ms) {
#ifdef TCPCONF_LWIP
    for (;;) { /* host fd and lwIP fds live in different worlds: poll lwIP without waiting, host in slices */
        int s = n ? lwip_poll(pfds + 1, (nfds_t)n, 0) : 0;
        int slice = s > 0 ? 0 : (!n || (timeout_ms >= 0 && timeout_ms < SLICE_MS)) ? timeout_ms : SLICE_MS;
        int r = poll(pfds, 1, slice);
        if (s > 0 || r != 0 || slice == timeout_ms) return;
        if (timeout_ms > 0) timeout_ms = timeout_ms > slice ? timeout_ms - slice : 0;
    }
#else
    poll(pfds, (nfds_t)n + 1, timeout_ms);
#endif
}

static void end_session(void) {
    for (int k = 0; k < MAX_PENDING; k++)
        if (S.pend[k].used) {
            if (S.pend[k].op == OP_CONNECT) S_CLOSE(S.pend[k].fd);
            free(S.pend[k].buf);
        }
    for (int k = 0; k < MAX_SOCKS; k++)
        if (S.slots[k].fd >= 0) S_CLOSE(S.slots[k].fd);
}

/* Serves one session on (in, out) until bye, end of input or a rejected handshake (TCP mode). */
static void serve(int in, int out) {
    static const short EVENTS[OP_COUNT] = {[OP_ACCEPT] = POLLIN, [OP_RECV] = POLLIN, [OP_CONNECT] = POLLOUT,
                                           [OP_SEND] = POLLOUT};
    struct pollfd pfds[MAX_PENDING + 1];
    struct buf line = {0};
    int discarding = 0;
    memset(&S, 0, sizeof S);
    S.in = in;
    S.out = out;
    S.authenticated = cfg.token == NULL;
    S.next_handle = 1;
    for (int k = 0; k < MAX_SOCKS; k++) S.slots[k].fd = -1;
    while (!S.ending) {
        int n = 0, timeout = -1;
        double now = now_ms();
        pfds[0] = (struct pollfd){in, POLLIN, 0};
        for (int k = 0; k < MAX_PENDING; k++) {
            struct pending *p = &S.pend[k];
            if (!p->used) continue;
            pfds[++n] = (struct pollfd){p->fd, EVENTS[p->op], 0};
            p->pfd = n;
            int left = p->deadline > now ? (int)(p->deadline - now) + 1 : 0;
            if (timeout < 0 || left < timeout) timeout = left;
        }
        wait_events(pfds, n, timeout);
        if (pfds[0].revents) {
            char chunk[65536];
            ssize_t got = read(in, chunk, sizeof chunk);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) break; /* end of input */
            for (ssize_t i = 0; i < got && !S.ending; i++) {
                if (chunk[i] == '\n') {
                    if (!discarding) handle_line(line.p ? line.p : chunk, line.len);
                    line.len = 0;
                    discarding = 0;
                } else if (!discarding && line.len >= MAX_LINE) {
                    fail("EINVAL", "line longer than %d bytes", MAX_LINE);
                    reply(0, 0, 0);
                    discarding = 1;
                } else if (!discarding) {
                    b_need(&line, 1);
                    line.p[line.len++] = chunk[i];
                }
            }
        }
        now = now_ms();
        for (int k = 0; k < MAX_PENDING && !S.ending; k++) {
            struct pending *p = &S.pend[k];
            if (p->used && p->pfd > 0 && (pfds[p->pfd].revents || p->op != OP_CONNECT))
                progress(p, pfds[p->pfd].revents);
            if (p->used && p->pfd > 0 && now >= p->deadline) {
                fail("ETIMEDOUT", "%s did not complete within timeout_ms", OPS[p->op]);
                if (p->op == OP_SEND) { E.with_sent = 1; E.sent = (long long)p->done; }
                if (p->op == OP_CONNECT) S_CLOSE(p->fd);
                finish(p, 0);
            }
        }
    }
    end_session();
    free(line.p);
    free(S.res.p);
}

/* ---- command line -------------------------------------------------------------------------------------- */

static int serve_listen(const char *where, int once) {
    char host[128];
    const char *colon = strrchr(where, ':');
    struct sockaddr_storage ss;
    socklen_t len;
    int on = 1;
    if (!colon || (size_t)(colon - where) >= sizeof host || !colon[1]) { logmsg("--listen wants HOST:PORT"); return 2; }
    memcpy(host, where, (size_t)(colon - where));
    host[colon - where] = '\0';
    char *h = host;
    if (*h == '[' && h[strlen(h) - 1] == ']') { h[strlen(h) - 1] = '\0'; h++; }
    int af = strchr(h, ':') ? AF_INET6 : AF_INET;
    if (make_addr(af, h, atoi(colon + 1), &ss, &len)) { logmsg("--listen: %s", E.msg); return 2; }
    int srv = socket(af, SOCK_STREAM, 0);
    if (srv < 0 || setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) ||
        bind(srv, (struct sockaddr *)&ss, len) || listen(srv, 4)) {
        logmsg("--listen %s: %s", where, strerror(errno));
        return 1;
    }
    logmsg("listening on %s%s", where, cfg.token ? "" : " (no --token: anyone who reaches it may use the agent)");
    for (;;) {
        int conn = accept(srv, NULL, NULL);
        if (conn < 0) { if (errno == EINTR) continue; logmsg("accept: %s", strerror(errno)); return 1; }
        setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        serve(conn, conn);
        close(conn);
        if (once) return 0;
    }
}

static int serve_device(const char *path, int once) { /* e.g. a virtio-serial port inside a QEMU guest */
    for (;;) {
        int fd = open(path, O_RDWR | O_NOCTTY);
        if (fd < 0) { logmsg("%s: %s", path, strerror(errno)); return 1; }
        serve(fd, fd);
        close(fd);
        if (once) return 0;
        nanosleep(&(struct timespec){0, 100000000}, NULL); /* the host side went away: wait, reopen */
    }
}

int tcpconf_agent_main(int argc, char **argv) {
    const char *listen_at = NULL, *device = NULL;
    int stdio = 0, once = 0;
    signal(SIGPIPE, SIG_IGN);
    for (int k = 1; k < argc; k++) {
        const char *a = argv[k], *v = k + 1 < argc ? argv[k + 1] : NULL;
        if (!strcmp(a, "--stdio")) stdio = 1;
        else if (!strcmp(a, "--once")) once = 1;
        else if (!strcmp(a, "--listen") && v) { listen_at = v; k++; }
        else if (!strcmp(a, "--device") && v) { device = v; k++; }
        else if (!strcmp(a, "--token") && v) { cfg.token = v; k++; }
        else if (!strcmp(a, "--allow-connect") && v && cfg.nallow < MAX_ALLOW) {
            if (parse_net(v, &cfg.allow[cfg.nallow++])) { logmsg("bad --allow-connect '%s'", v); return 2; }
            k++;
        } else {
            fprintf(stderr, "usage: %s (--stdio | --listen HOST:PORT | --device PATH) [--token TOKEN] "
                    "[--allow-connect ADDR[/PREFIX]]... [--once]\n", argv[0]);
            return 2;
        }
    }
    if (stdio + (listen_at != NULL) + (device != NULL) != 1) {
        logmsg("give exactly one of --stdio, --listen HOST:PORT, --device PATH");
        return 2;
    }
    if (listen_at) { cfg.close_on_reject = 1; return serve_listen(listen_at, once); }
    if (device) return serve_device(device, once);
    serve(0, 1);
    logmsg("end of session");
    return 0;
}

#ifndef TCPCONF_LWIP
int main(int argc, char **argv) { return tcpconf_agent_main(argc, argv); }
#endif
