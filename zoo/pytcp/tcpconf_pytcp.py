"""tcpconf-pytcp: PyTCP (pure-Python TCP/IP stack) on a tap, driven by the upper-tester agent protocol on stdio.

Stack and agent share one process and one asyncio loop (the launch contract in the zoo notes). stdout carries
protocol lines only; PyTCP logs nothing unless its logger is set to DEBUG (``--debug`` sends that to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import os
import sys

from pytcp_agent import Agent, Config, log
from pytcp_boot import StackConfig, start_stack, stop_stack

STOP_BUDGET_S = 1.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tcpconf-pytcp", description=__doc__.splitlines()[0])
    parser.add_argument("--tap", required=True, help="existing tap device to attach to")
    parser.add_argument("--mac", default="02:00:00:00:00:01")
    parser.add_argument("--ipv4", default="198.18.0.1/24", help="ADDR/PREFIX")
    parser.add_argument("--ipv6", default="2001:2::1/64", help="ADDR/PREFIX")
    parser.add_argument("--allow-connect", action="append", default=[], metavar="ADDR[/PREFIX]")
    parser.add_argument("--token")
    parser.add_argument("--debug", action="store_true", help="PyTCP's debug log on stderr")
    return parser.parse_args(argv)


def platform_name() -> str:
    version = importlib.metadata.version("pmd-pytcp")
    return f"PyTCP {version} (pmd-pytcp, pure Python {sys.version.split()[0]})"


async def serve(args: argparse.Namespace) -> None:
    await start_stack(StackConfig(tap=args.tap, mac=args.mac, ipv4=args.ipv4, ipv6=args.ipv6))
    stdout = sys.stdout.buffer

    def write(data: bytes) -> None:
        with contextlib.suppress(OSError, ValueError):
            stdout.write(data)
            stdout.flush()

    agent = Agent(Config(token=args.token, allow_connect=args.allow_connect), platform_name(), write)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            if not agent.handle_line(line):
                break
    finally:
        agent.close_all()
        for task in list(agent.tasks):
            task.cancel()
        try:
            await asyncio.wait_for(stop_stack(), STOP_BUDGET_S)
        except Exception as exc:  # exiting anyway; the tap fd goes with the process
            log(f"stack stop: {exc!r}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.debug:
        logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        log(f"cannot run on {args.tap}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # stack threads (if any) must not keep the process alive after EOF
