/*
 * tcpconf_lwip.c - lwIP 2.1.3 (Debian liblwip, unix port) as a zoo target of the TCP conformance suite.
 *
 * Follows the suite's launch contract: attaches lwIP's tapif driver to an existing tap device, gives the netif
 * the requested MAC, IPv4 and IPv6 addresses, then runs the portable C agent (agent/c/tcpconf_agent.c, built
 * with -DTCPCONF_LWIP) on stdin/stdout; its test sockets are lwIP sockets. Logs go to stderr.
 *
 *   tcpconf-lwip --tap IFNAME --mac MAC --ipv4 ADDR/PREFIX --ipv6 ADDR/PREFIX [--allow-connect ADDR]... [--token T]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lwip/init.h"
#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/sys.h"
#include "lwip/tcpip.h"
#include "netif/tapif.h"

int tcpconf_agent_main(int argc, char **argv);

static u8_t mac[6];

/* tapif_init opens /dev/net/tun and, with PRECONFIGURED_TAPIF set, attaches to that existing device instead of
 * creating tap0 and running ifconfig on the host. It then starts its reader thread. */
static err_t netif_init_tap(struct netif *netif) {
    err_t err = tapif_init(netif);
    if (err != ERR_OK) return err;
    memcpy(netif->hwaddr, mac, sizeof mac);
    netif->flags |= NETIF_FLAG_MLD6; /* needed to join solicited-node groups, so IPv6 NS get answered */
    return ERR_OK;
}

static void tcpip_ready(void *arg) { sys_sem_signal((sys_sem_t *)arg); }

static int split_prefix(const char *text, char *addr, size_t size, int max) {
    const char *slash = strchr(text, '/');
    size_t len = slash ? (size_t)(slash - text) : strlen(text);
    int prefix = slash ? atoi(slash + 1) : max;
    if (len >= size || prefix < 0 || prefix > max) return -1;
    memcpy(addr, text, len);
    addr[len] = '\0';
    return prefix;
}

static void usage(const char *prog) {
    fprintf(stderr, "usage: %s --tap IFNAME --mac MAC --ipv4 ADDR/PREFIX --ipv6 ADDR/PREFIX "
            "[--allow-connect ADDR]... [--token TOKEN]\n", prog);
    exit(2);
}

int main(int argc, char **argv) {
    const char *tap = NULL, *mac_text = "02:00:00:00:00:01", *v4 = "198.18.0.1/24", *v6 = "2001:2::1/64";
    char **agent_argv = calloc((size_t)argc + 2, sizeof *agent_argv), addr[64];
    int agent_argc = 0;
    agent_argv[agent_argc++] = argv[0];
    agent_argv[agent_argc++] = "--stdio";
    for (int k = 1; k < argc; k++) {
        if (k + 1 >= argc) usage(argv[0]);
        if (!strcmp(argv[k], "--tap")) tap = argv[++k];
        else if (!strcmp(argv[k], "--mac")) mac_text = argv[++k];
        else if (!strcmp(argv[k], "--ipv4")) v4 = argv[++k];
        else if (!strcmp(argv[k], "--ipv6")) v6 = argv[++k];
        else if (!strcmp(argv[k], "--allow-connect") || !strcmp(argv[k], "--token")) {
            agent_argv[agent_argc++] = argv[k++];
            agent_argv[agent_argc++] = argv[k];
        } else usage(argv[0]);
    }
    unsigned m[6];
    if (!tap || sscanf(mac_text, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) usage(argv[0]);
    for (int k = 0; k < 6; k++) mac[k] = (u8_t)m[k];

    ip4_addr_t ip4, mask, gw;
    ip6_addr_t ip6;
    int p4 = split_prefix(v4, addr, sizeof addr, 32);
    if (p4 < 0 || !ip4addr_aton(addr, &ip4)) { fprintf(stderr, "lwip: bad --ipv4 %s\n", v4); return 2; }
    ip4_addr_set_u32(&mask, p4 ? lwip_htonl(0xffffffffUL << (32 - p4)) : 0);
    ip4_addr_set_zero(&gw);
    int p6 = split_prefix(v6, addr, sizeof addr, 128);
    if (p6 < 0 || !ip6addr_aton(addr, &ip6)) { fprintf(stderr, "lwip: bad --ipv6 %s\n", v6); return 2; }
    if (p6 != 64) fprintf(stderr, "lwip: note: lwIP treats every IPv6 address as a /64 on-link prefix\n");
    setenv("PRECONFIGURED_TAPIF", tap, 1);

    sys_sem_t ready;
    static struct netif netif;
    s8_t index;
    sys_sem_new(&ready, 0);
    tcpip_init(tcpip_ready, &ready);
    sys_sem_wait(&ready);
    LOCK_TCPIP_CORE();
    if (!netif_add(&netif, &ip4, &mask, &gw, NULL, netif_init_tap, tcpip_input)) {
        UNLOCK_TCPIP_CORE();
        fprintf(stderr, "lwip: cannot attach to tap device %s\n", tap);
        return 1;
    }
    netif_create_ip6_linklocal_address(&netif, 1);
    netif_ip6_addr_set_state(&netif, 0, IP6_ADDR_PREFERRED); /* skip duplicate-address detection */
    if (netif_add_ip6_address(&netif, &ip6, &index) != ERR_OK) {
        UNLOCK_TCPIP_CORE();
        fprintf(stderr, "lwip: cannot add %s\n", v6);
        return 1;
    }
    netif_ip6_addr_set_state(&netif, index, IP6_ADDR_PREFERRED);
    netif_set_default(&netif);
    netif_set_link_up(&netif);
    netif_set_up(&netif);
    UNLOCK_TCPIP_CORE();
    fprintf(stderr, "lwip: lwIP %s up on %s, mac %s, %s, %s\n", LWIP_VERSION_STRING, tap, mac_text, v4, v6);
    return tcpconf_agent_main(agent_argc, agent_argv);
}
