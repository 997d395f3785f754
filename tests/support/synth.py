"""Deterministic generator of realistic synthetic Cilium Tetragon export events.

Events mimic Tetragon's JSON export (protojson with ``UseProtoNames``): snake_case keys in proto field order,
zero scalars omitted, ``UInt32Value`` wrappers (``pid``, ``uid``, ``tid``, ``auid``, ``setuid`` ...) kept even
when 0, 64-bit integers (``cookie``, ``long_arg``, ``Config``, inode numbers, counts) as strings, map keys
sorted, compact UTF-8 output (non-ASCII not escaped).

Scenario names (keys of :data:`SCENARIOS`, usable in ``mix``); ``*_near`` are near-misses of the rule before:

* ``exec``, ``exit``: ordinary process_exec / process_exit (pod most of the time, host otherwise);
* ``ebpf``, ``ebpf_near``: bpf-library-policy kprobes (bpf_check, security_bpf_map_alloc/create,
  security_perf_event_alloc, security_file_permission/security_mmap_file on /sys/fs/bpf; near: other paths);
* ``kmod``, ``kmod_near``: monitor-kernel-modules (module_request, kernel_read_file int_arg 2; near: != 2);
* ``library``: process_loader;
* ``tmp_exec``, ``tmp_near``: exec from /tmp/, /var/tmp/, /dev/shm/ (near: /usr/lib/tmp/x, /tmpfoo/bar ...);
* ``sudo``, ``sudo_near``: /usr/bin/sudo, /usr/bin/sudoedit (near: /home/u/pseudo-tool, /usr/bin/sudoers-check);
* ``suid``, ``suid_near``: exec with binary_properties.setuid 0 / setgid 5 (near: memfd exec, only file.inode);
* ``setuid``, ``setuid_near``: __sys_set*id kprobes of privileges-setuid-root / privileges-raise
  (near: security_capset, create_user_ns);
* ``ssh``, ``ssh_near``: sshd policy "accept" sock kprobes (near: tcp_close by /usr/bin/curl);
* ``egress``, ``egress_sockaddr``: tcp_connect sock_arg to many CIDRs; security_socket_connect sockaddr_arg;
* ``tracepoint``, ``uprobe``, ``lsm``, ``throttle``, ``rate_limit``, ``unknown`` (``process_future_thing``).
"""
from __future__ import annotations

import argparse
import base64
import bisect
import itertools
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import orjson

Obj = dict[str, Any]
SCENARIOS: dict[str, float] = {
    "exec": 0.31, "exit": 0.14, "ebpf": 0.035, "ebpf_near": 0.015, "kmod": 0.02, "kmod_near": 0.01,
    "library": 0.05, "tmp_exec": 0.025, "tmp_near": 0.012, "sudo": 0.025, "sudo_near": 0.012, "suid": 0.025,
    "suid_near": 0.012, "setuid": 0.035, "setuid_near": 0.015, "ssh": 0.035, "ssh_near": 0.012, "egress": 0.1,
    "egress_sockaddr": 0.025, "tracepoint": 0.008, "uprobe": 0.008, "lsm": 0.008, "throttle": 0.005,
    "rate_limit": 0.004, "unknown": 0.01,
}
"""Scenario name -> default relative weight (the default ``mix``)."""

_EPOCH_NS = 1715677200 * 10**9  # 2024-05-14T09:00:00Z
_NODES = ["gke-prod-eu-pool-1-8f3a2c1d-x9z1", "gke-prod-eu-pool-1-8f3a2c1d-q4mn", "gke-prod-eu-pool-2-51be07aa-7kd2"]
_APPS = [  # namespace, workload, container, image, binaries run inside
    ("default", "xwing", "spaceship", "docker.io/tgraf/netperf:latest", ["/usr/bin/curl", "/bin/ping", "/bin/sh"]),
    ("tenant-jobs", "elasticsearch", "elasticsearch", "quay.io/isovalent/jobs-app-elasticsearch:latest",
     ["/usr/share/elasticsearch/jdk/bin/java", "/usr/bin/cat"]),
    ("kube-system", "coredns", "coredns", "registry.k8s.io/coredns/coredns:v1.11.1", ["/coredns"]),
    ("monitoring", "prometheus-server", "prometheus", "quay.io/prometheus/prometheus:v2.51.2", ["/bin/wget"]),
    ("payments", "checkout-api", "checkout", "ghcr.io/acme/checkout-api:1.14.3", ["/usr/local/bin/python3"]),
    ("ingress-nginx", "ingress-nginx-controller", "controller", "registry.k8s.io/ingress-nginx/controller:v1.10.1",
     ["/nginx-ingress-controller", "/usr/bin/nginx"]),
    ("data", "postgres", "postgres", "docker.io/library/postgres:16.2", ["/usr/bin/psql", "/usr/bin/pg_dump"]),
    ("ci", "actions-runner", "runner", "ghcr.io/actions/actions-runner:2.316.0", ["/usr/bin/git", "/usr/bin/make"]),
]
_HOST_BINS = ["/usr/bin/kubelet", "/usr/bin/containerd", "/usr/lib/systemd/systemd-journald", "/usr/bin/bash",
              "/usr/sbin/iptables", "/usr/bin/crictl", "/usr/bin/ls", "/usr/bin/curl"]
_ARGS = {  # basename -> typical arguments ("" = none); other binaries use _ARGS[""]
    "": ["", "", "-D", "--config /etc/app/config.yaml", "-v"],
    "curl": ["https://ebpf.io", "-sS -o /dev/null http://checkout-api.payments.svc.cluster.local:8080/healthz"],
    "wget": ["-q -O- http://prometheus-server.monitoring:9090/-/ready"], "python3": ["app.py --workers 4"],
    "git": ["fetch origin main", "clone https://github.com/cilium/tetragon"], "cat": ["/etc/os-release", "/etc/passwd"],
    "sh": ['-c "PORT=9080 python app.py"', "lifecycle.sh"], "iptables": ["-A OUTPUT -m cgroup --cgroup 1 -j LOG"],
    "psql": ["-U app -d orders -c 'select 1'"], "kubelet": ["--config=/var/lib/kubelet/config.yaml --v=2"],
    "crictl": ["ps -a", "inspect 2e58c8357465"], "ls": ["-la /var/log"], "make": ["-j8 test"], "bash": ["", "-l"],
    "bpftool": ["prog list", "map show"], "sudo": ["-i", "id", "systemctl restart nginx"], "sudoedit": ["/etc/hosts"],
}
_WEIRD_ARGS = ['echo "héllo wörld"', "-c 'printf \"%s\\t%s\\n\" a b'", "C:\\Windows\\System32\\cmd.exe /c dir",
               "--name=日本語テスト", "deploy 🚀 --force", "a\tb\tc", "\x1b[31mred\x1b[0m", "line\u2028sep\x7f",
               'say "\\"quoted\\"" \\\\ done', "naïve café ÅÆØ"]
_CAPS = ["CAP_CHOWN", "DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
         "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE"]
_PUBLIC4 = ["104.198.14.52", "142.250.180.196", "151.101.1.69", "140.82.112.3", "52.95.110.1", "34.120.177.193"]
_V6 = [("2606:4700::6810:84e5", "fd00:10:244:1::1f"), ("2a00:1450:4001:82b::200e", "fd00:10:244:2::7"),
       ("fd00:10:96::a", "fd00:10:244:1::1f"), ("fdaa:1234::42", "fd00:10:244:3::9"), ("::1", "::1"),
       ("::ffff:104.198.14.52", "::ffff:10.244.1.17"), ("fd00:ec2::254", "fd00:10:244:1::1f")]
_LIBS = ["/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
         "/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
         "/usr/local/lib/python3.12/lib-dynload/_ssl.cpython-312-x86_64-linux-gnu.so"]
_SETID = ["__sys_setuid", "__sys_setgid", "__sys_setreuid", "__sys_setregid", "__sys_setresuid", "__sys_setresgid",
          "__sys_setfsuid", "__sys_setfsgid"]
_ALNUM = "bcdfghjklmnpqrstvwxz2456789"


def _ts(ns: int) -> str:
    """Format epoch nanoseconds as protojson does (0, 3, 6 or 9 fraction digits, ``Z``)."""
    sec, nano = divmod(ns, 10**9)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if nano == 0:
        return base + "Z"
    if nano % 10**6 == 0:
        return f"{base}.{nano // 10**6:03d}Z"
    return f"{base}.{nano // 1000:06d}Z" if nano % 1000 == 0 else f"{base}.{nano:09d}Z"


class _World:
    """Fixed random cluster (pods), a clock, a pid counter and the process builder."""

    def __init__(self, rng: random.Random) -> None:
        self.r, self.now, self.pid = rng, _EPOCH_NS, 20000
        self.pods: list[Obj] = []
        for ns, wl, cname, image, bins in _APPS:
            digest, rs = f"{rng.getrandbits(256):064x}", "".join(rng.choices(_ALNUM, k=10))
            for _ in range(3):
                cid = f"{rng.getrandbits(256):064x}"
                container = {"id": f"containerd://{cid}", "name": cname,
                             "image": {"id": f"{image.rsplit(':', 1)[0]}@sha256:{digest}", "name": image},
                             "start_time": _ts((self.now - rng.randrange(10**12, 10**14)) // 10**9 * 10**9)}
                pod = {"namespace": ns, "name": f"{wl}-{rs}-{''.join(rng.choices(_ALNUM, k=5))}",
                       "container": container, "pod_labels": {"app.kubernetes.io/name": wl, "pod-template-hash": rs},
                       "workload": wl, "workload_kind": "Deployment"}
                self.pods.append({"pod": pod, "docker": cid[:31], "bins": bins, "cpid": rng.randrange(1, 300)})

    def exec_id(self, node: str, pid: int, start: int) -> str:
        """Base64 of ``node:ktime:pid``, like Tetragon's exec ids."""
        return base64.b64encode(f"{node}:{start - _EPOCH_NS + 10**13}:{pid}".encode()).decode()

    def proc(self, node: str, binary: str | None = None, args: str | None = None, *, host: bool | None = None,
             uid: int = 0, extra: Obj | None = None) -> tuple[Obj, Obj]:
        """Build (process, parent); ``host`` True/False forces absence/presence of ``pod``; None = 65 % pod."""
        r = self.r
        ctx = None if (host if host is not None else r.random() < 0.35) else r.choice(self.pods)
        binary = binary or r.choice(ctx["bins"] if ctx else _HOST_BINS)
        if args is None:
            args = r.choice(_WEIRD_ARGS if r.random() < 0.02 else _ARGS.get(binary.rsplit("/", 1)[-1], _ARGS[""]))
        self.pid += r.randrange(1, 40)
        ppid, start = self.pid - r.randrange(1, 400), self.now - r.randrange(10**5, 5 * 10**9)
        pstart = start - r.randrange(10**6, 6 * 10**10)
        shim = ctx is not None and r.random() < 0.3  # container init: parent is the (host) runtime shim
        cwd = "/" if ctx else r.choice(["/", "/root", "/home/ubuntu"])

        def one(pid: int, st: int, bin_: str, argv: str, pctx: Obj | None, parent_id: str, refcnt: int) -> Obj:
            p: Obj = {"exec_id": self.exec_id(node, pid, st), "pid": pid, "uid": uid, "cwd": cwd, "binary": bin_}
            if argv:
                p["arguments"] = argv
            p.update(flags="execve rootcwd clone" if cwd == "/" else "execve clone", start_time=_ts(st),
                     auid=4294967295 if ctx else 1000)
            if pctx:
                container = {**pctx["pod"]["container"], "pid": pctx["cpid"] + (pid != ppid)}
                p["pod"] = {**pctx["pod"], "container": container}
                p["docker"] = pctx["docker"]
            p["parent_exec_id"] = parent_id
            if refcnt:
                p["refcnt"] = refcnt
            if r.random() < 0.03:
                p["cap"] = {"permitted": _CAPS, "effective": _CAPS}
            p["tid"] = pid
            return p

        gp = self.exec_id(node, ppid - r.randrange(1, 50), pstart - 10**9)
        pbin = "/usr/bin/containerd-shim-runc-v2" if shim else r.choice(["/bin/sh", "/bin/bash", "/usr/bin/dash"])
        pargs = "-namespace k8s.io -id %s" % (ctx or {}).get("docker", "") if shim else r.choice(["", "-c make"])
        parent = one(ppid, pstart, pbin, pargs, None if shim else ctx, gp, r.randrange(1, 4))
        process = one(self.pid, start, binary, args, ctx, parent["exec_id"], r.randrange(0, 3))
        process.update(extra or {})
        if ctx and r.random() < 0.3:
            process["in_init_tree"] = shim
        return process, parent

    def sock(self, saddr: str, daddr: str, sport: int, dport: int, state: str) -> Obj:
        """KprobeSock JSON: mark/priority omitted when 0 (proto3), cookie a uint64 string."""
        s: Obj = {"family": "AF_INET6" if ":" in daddr else "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP"}
        if self.r.random() < 0.1:
            s["mark"] = self.r.choice([0xA00, 0xE00, 0x200])
        s.update(saddr=saddr, daddr=daddr, sport=sport, dport=dport, cookie=str(self.r.randrange(1 << 63, 1 << 64)),
                 state=state)
        return s


def _kprobe(w: _World, node: str, binary: str | None, fn: str, args: list[Obj], policy: str, *, ret: Obj | None = None,
            argv: str | None = None, host: bool | None = None, **extra: Any) -> Obj:
    """A process_kprobe event (keys in proto order: ..., args, return, action, policy_name, return_action, message)."""
    proc, parent = w.proc(node, binary, argv, host=host)
    ev: Obj = {"process": proc, "parent": parent, "function_name": fn}
    if args:
        ev["args"] = args
    if ret is not None:
        ev["return"] = ret
    ev.update(action="KPROBE_ACTION_POST", policy_name=policy, **extra)
    return {"process_kprobe": ev}


def _exec(w: _World, node: str, binary: str | None = None, args: str | None = None, **kw: Any) -> Obj:
    proc, parent = w.proc(node, binary, args, **kw)
    return {"process_exec": {"process": proc, "parent": parent}}


def _choice_exec(bins: list[str], w: _World, node: str, **kw: Any) -> Obj:
    return _exec(w, node, w.r.choice(bins), **kw)


def _s_exit(w: _World, n: str) -> Obj:
    proc, parent = w.proc(n)
    proc.pop("refcnt", None)
    ev: Obj = {"process": proc, "parent": parent}
    if w.r.random() < 0.15:
        ev["signal"] = w.r.choice(["SIGKILL", "SIGTERM", "SIGSEGV"])
    elif w.r.random() < 0.3:
        ev["status"] = w.r.choice([1, 2, 127, 137])
    ev["time"] = _ts(w.now)
    return {"process_exit": ev}


def _s_ebpf(w: _World, n: str, near: bool = False) -> Obj:
    r, pol = w.r, "bpf-library-policy"
    binary = r.choice(["/usr/sbin/bpftool", "/usr/bin/cilium-agent", "/usr/bin/tetragon"])
    fns = ["bpf_check", "security_bpf_map_alloc", "security_bpf_map_create", "security_perf_event_alloc"]
    fn = r.choice(fns[4 * near:] + ["security_file_permission", "security_mmap_file"])
    path = r.choice(["/sys/fs/cgroup/memory.max", "/sysfsbpf/x", "/etc/bpf.conf", "/var/lib/bpf/sys/fs/bpf"] if near
                    else ["/sys/fs/bpf/tc/globals/cilium_calls_00", "/sys/fs/bpf/tetragon/execve_map", "/sys/fs/bpf/m"])
    if fn == "bpf_check":
        attr: Obj = {"ProgType": r.choice(["BPF_PROG_TYPE_SOCKET_FILTER", "BPF_PROG_TYPE_KPROBE", "BPF_PROG_TYPE_XDP"]),
                     "InsnCnt": r.choice([2, 31, 1024, 4096])}
        if r.random() < 0.7:
            attr["ProgName"] = r.choice(["cil_from_netdev", "event_execve", "tg_kp_bprm_com"])
        return _kprobe(w, n, binary, fn, [{"bpf_attr_arg": attr}], pol, argv="prog list", host=True)
    if fn == "security_perf_event_alloc":
        pe = {"KprobeFunc": r.choice(["commit_creds", "tcp_connect"]), "Type": "PERF_TYPE_TRACEPOINT",
              "Config": str(r.randrange(1, 5000))}
        return _kprobe(w, n, binary, fn, [{"perf_event_arg": pe}], pol, host=True)
    if fn.startswith("security_bpf_map"):
        m = {"MapType": r.choice(["BPF_MAP_TYPE_HASH", "BPF_MAP_TYPE_LRU_HASH", "BPF_MAP_TYPE_PERCPU_ARRAY"]),
             "KeySize": r.choice([4, 8, 16]), "ValueSize": r.choice([8, 64, 256]),
             "MaxEntries": r.choice([1024, 65536]),
             "MapName": r.choice(["execve_map", "cilium_ct4_glob", "tg_conf_map"])}
        return _kprobe(w, n, binary, fn, [{"bpf_map_arg": m}], pol, host=True)
    flags = [{"int_arg": r.choice([2, 4])}] if fn == "security_file_permission" else \
        [{"uint_arg": r.choice([1, 3])}, {"uint_arg": 1}]
    return _kprobe(w, n, binary, fn, [{"file_arg": {"path": path}}, *flags], pol, ret={"int_arg": 0})


def _s_kmod(w: _World, n: str, near: bool = False) -> Obj:
    r, pol = w.r, "monitor-kernel-modules"
    if not near and r.random() < 0.5:
        mod = r.choice(["fs-xfs", "ipt_LOG", "nf_conntrack_netlink", "net-pf-38"])
        return _kprobe(w, n, r.choice(["/bin/mount", "/sbin/iptables"]), "security_kernel_module_request",
                       [{"string_arg": mod}], pol, ret={"int_arg": 0})
    ko = r.choice(["/lib/modules/6.1.0-21-cloud-amd64/kernel/fs/xfs/xfs.ko", "/home/dev/rootkit/hide_pid.ko",
                   "/tmp/kernel_module_hello.ko"])
    return _kprobe(w, n, "/usr/sbin/insmod", "security_kernel_read_file",
                   [{"file_arg": {"path": ko}}, {"int_arg": r.choice([1, 3, 4, 5]) if near else 2}], pol,
                   ret={"int_arg": 0}, argv=ko, host=True)


def _s_library(w: _World, n: str) -> Obj:
    proc, parent = w.proc(n)
    ev: Obj = {"process": proc, "path": w.r.choice(_LIBS),
               "buildid": base64.b64encode(w.r.getrandbits(160).to_bytes(20, "big")).decode()}
    if w.r.random() < 0.5:
        ev["parent"] = parent
    return {"process_loader": ev}


def _s_suid(w: _World, n: str, near: bool = False) -> Obj:
    r = w.r
    if near:  # memfd exec: only the inode, no setuid/setgid key
        props: Obj = {"file": {"inode": {"number": str(r.randrange(10**4, 10**7)), "links": 0}}}
        return _exec(w, n, f"/memfd:{r.choice(['x', 'runc_cloned:/proc/self/exe'])} (deleted)",
                     extra={"binary_properties": props})
    binary, bit = r.choice([("/usr/bin/sudo", "setuid"), ("/usr/bin/su", "setuid"), ("/usr/bin/passwd", "setuid"),
                            ("/usr/bin/wall", "setgid"), ("/usr/bin/mount", "setuid"), ("/usr/bin/chage", "setgid")])
    su = bit == "setuid"
    cred = {"uid": 1000, "gid": 1000, "euid": 0 if su else 1000, "egid": 1000 if su else 5, "suid": 0 if su else 1000,
            "sgid": 1000 if su else 5, "fsuid": 0 if su else 1000, "fsgid": 1000 if su else 5}
    props = {bit: 0 if su else 5, "privileges_changed": ["PRIVILEGES_RAISED_EXEC_FILE_" + bit.upper()]}
    return _exec(w, n, binary, r.choice(["id", "-", "hello", ""]), uid=1000,
                 extra={"process_credentials": cred, "binary_properties": props})


def _s_setuid(w: _World, n: str, near: bool = False) -> Obj:
    r = w.r
    if near and r.random() < 0.5:
        return _kprobe(w, n, r.choice(["/usr/bin/unshare", "/usr/bin/podman"]), "create_user_ns", [],
                       "privileges-raise", message="Unprivileged process created a user namespace")
    if near:
        cred = {"process_credentials_arg": dict.fromkeys(("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid",
                                                          "fsgid"), 1000)}
        caps = [{"cap_effective_arg": "000001ffffffffff"}, {"cap_inheritable_arg": "0000000000000000"},
                {"cap_permitted_arg": "000001ffffffffff"}]
        return _kprobe(w, n, "/usr/sbin/capsh", "security_capset", [cred, *caps], "privileges-raise",
                       message="Process changed its capabilities using capset system call")
    fn = r.choice(_SETID)
    argc = 3 if "setres" in fn else 2 if "setre" in fn else 1
    args = [{"int_arg": 0 if i == 1 or argc == 1 else r.choice([-1, 0])} for i in range(argc)]
    if r.random() < 0.6:
        return _kprobe(w, n, "/usr/bin/sudo", fn, args, "privileges-setuid-root", ret={"int_arg": 0}, argv="id")
    return _kprobe(w, n, r.choice(["/usr/bin/su", "/usr/sbin/cron"]), fn, args, "privileges-raise",
                   message="Privileged operation setuid to root")


def _s_ssh(w: _World, n: str, near: bool = False) -> Obj:
    r = w.r
    srv, cli = f"10.128.0.{r.randrange(2, 60)}", r.choice(["192.168.1.20", "203.0.113.7", "10.0.0.5"])
    if near:
        s = w.sock(srv, r.choice(_PUBLIC4), r.randrange(32768, 60999), 443, "TCP_CLOSE")
        return _kprobe(w, n, "/usr/bin/curl", "tcp_close", [{"sock_arg": s}], "accept", argv="https://ebpf.io")
    fn = r.choice(["tcp_close", "tcp_set_state", "sk_alloc", "tcp_create_openreq_child", "sk_free"])
    state = {"tcp_close": "TCP_CLOSE_WAIT", "tcp_set_state": "TCP_SYN_RECV", "sk_free": "TCP_CLOSE"}
    s = w.sock(srv, cli, 22, r.randrange(32768, 60999), state.get(fn, "TCP_ESTABLISHED"))
    kw: Obj = {"argv": "-D -R", "host": True}
    if fn in ("sk_alloc", "tcp_create_openreq_child"):
        args = [{"int_arg": 2, "label": "Family"}] if fn == "sk_alloc" else [{"sock_arg": s}]
        return _kprobe(w, n, "/usr/sbin/sshd", fn, args, "accept", ret={"sock_arg": s},
                       return_action="KPROBE_ACTION_TRACKSOCK", **kw)
    args = [{"sock_arg": s}] + ([{"int_arg": 1, "label": "state"}] if fn == "tcp_set_state" else [])
    return _kprobe(w, n, "/usr/sbin/sshd", fn, args, "accept", **kw)


def _dest(r: random.Random) -> tuple[str, str]:
    """(daddr, saddr): public, pod, service, RFC1918, CGNAT, metadata, link-local, loopback, IPv6 variants."""
    if r.random() < 0.2:
        return r.choice(_V6)
    o = [r.randrange(1, 255) for _ in range(3)]
    d = r.choice([r.choice(_PUBLIC4), f"10.244.{o[0]}.{o[1]}", f"10.96.{o[0]}.{o[1]}",
                  f"172.{16 + o[2] % 16}.{o[0]}.{o[1]}",
                  f"192.168.{o[0]}.{o[1]}", f"100.{64 + o[2] % 64}.{o[0]}.{o[1]}", "169.254.169.254",
                  f"169.254.{o[0]}.{o[1]}", "127.0.0.1", r.choice(_PUBLIC4)])
    return d, ("127.0.0.1" if d == "127.0.0.1" else f"10.244.{o[2]}.{o[1]}")


def _s_egress(w: _World, n: str, sockaddr: bool = False) -> Obj:
    r = w.r
    daddr, saddr = _dest(r)
    port, v6 = r.choice([443, 80, 8080, 5432, 6379, 53]), ":" in daddr
    binary = r.choice(["/usr/bin/curl", "/usr/bin/wget", "/usr/local/bin/python3", "/usr/local/bin/node", "/tmp/nc"])
    if sockaddr:
        sa = {"family": "AF_INET6" if v6 else "AF_INET", "addr": daddr, "port": port}
        return _kprobe(w, n, binary, "security_socket_connect", [{"sockaddr_arg": sa}, {"int_arg": 28 if v6 else 16}],
                       "monitor-socket-connect", ret={"int_arg": 0})
    s = w.sock(saddr, daddr, r.randrange(32768, 60999), port, "TCP_SYN_SENT")
    url = (f"http://[{daddr}]:{port}/" if v6 else f"http://{daddr}:{port}/") if r.random() < 0.5 else None
    return _kprobe(w, n, binary, "tcp_connect", [{"sock_arg": s}], "monitor-network-activity-outside-cluster-cidr-range",
                   argv=url)


def _s_other(kind: str, w: _World, n: str) -> Obj:
    r = w.r
    if kind == "throttle":
        return {"process_throttle": {"type": r.choice(["THROTTLE_START", "THROTTLE_STOP"]),
                                     "cgroup": f"cri-containerd-{r.getrandbits(256):064x}.scope"}}
    if kind == "rate_limit":
        return {"rate_limit_info": {"number_of_dropped_process_events": str(r.randrange(1, 100000))}}
    proc, parent = w.proc(n)
    post = "KPROBE_ACTION_POST"
    if kind == "tracepoint":
        args = [{"int_arg": r.randrange(3, 40)}, {"long_arg": str(r.randrange(0, 1 << 40))}, {"int_arg": 0}]
        return {"process_tracepoint": {"process": proc, "parent": parent, "subsys": "syscalls",
                                       "event": "sys_enter_lseek", "args": args, "policy_name": "sys-lseek",
                                       "action": post}}
    if kind == "uprobe":
        return {"process_uprobe": {"process": proc, "parent": parent, "path": "/usr/bin/bash", "symbol": "readline",
                                   "policy_name": "bash-readline", "action": post}}
    if kind == "lsm":
        return {"process_lsm": {"process": proc, "parent": parent, "function_name": "bprm_check_security",
                                "policy_name": "file-integrity-monitoring",
                                "args": [{"linux_binprm_arg": {"path": proc["binary"], "permission": "-rwxr-xr-x"}}],
                                "action": post, "ima_hash": f"sha256:{r.getrandbits(256):064x}"}}
    return {"process_future_thing": {"process": proc, "widget": {"level": r.randrange(5), "tags": ["alpha", "β"]}}}


_BUILDERS: dict[str, Callable[[_World, str], Obj]] = {
    "exec": _exec, "exit": _s_exit, "library": _s_library,
    "tmp_exec": partial(_choice_exec, ["/tmp/nc", "/tmp/.x/kworker", "/var/tmp/update.sh", "/dev/shm/payload"]),
    "tmp_near": partial(_choice_exec, ["/usr/lib/tmp/x", "/tmpfoo/bar", "/var/tmpfiles/run", "/usr/bin/mktemp"]),
    "sudo": partial(_choice_exec, ["/usr/bin/sudo", "/usr/bin/sudoedit"], host=True, uid=1000),
    "sudo_near": partial(_choice_exec, ["/home/u/pseudo-tool", "/usr/bin/sudoers-check"]),
    **{k: partial(_s_other, k) for k in ("tracepoint", "uprobe", "lsm", "throttle", "rate_limit", "unknown")},
}
for _name, _fn in (("ebpf", _s_ebpf), ("kmod", _s_kmod), ("suid", _s_suid), ("setuid", _s_setuid), ("ssh", _s_ssh)):
    _BUILDERS[_name], _BUILDERS[_name + "_near"] = _fn, partial(_fn, near=True)
_BUILDERS["egress"], _BUILDERS["egress_sockaddr"] = _s_egress, partial(_s_egress, sockaddr=True)
assert set(_BUILDERS) == set(SCENARIOS)


def generate_tagged(count: int, seed: int = 0, mix: Mapping[str, float] | None = None) -> Iterator[tuple[str, bytes]]:
    """Like :func:`generate` but yield ``(scenario_name, line)`` pairs."""
    weights = dict(SCENARIOS if mix is None else mix)
    if set(weights) - set(SCENARIOS):
        raise ValueError(f"unknown scenarios: {sorted(set(weights) - set(SCENARIOS))}")
    names = [k for k, v in weights.items() if v > 0]
    if not names:
        raise ValueError("mix has no positive weight")
    cum = list(itertools.accumulate(weights[k] for k in names))
    r = random.Random(seed)
    w = _World(r)
    for _ in range(count):
        w.now += int(r.expovariate(1 / 2_000_000)) + 1
        name = names[bisect.bisect_right(cum, r.random() * cum[-1])]
        node = r.choice(_NODES)
        ev = _BUILDERS[name](w, node)
        ev.update(node_name=node, time=_ts(w.now))
        if name == "exit" and r.random() < 0.02:
            ev["aggregation_info"] = {"count": str(r.randrange(2, 50))}
        if r.random() < 0.9:
            ev["cluster_name"] = "prod-eu-west1"
        yield name, orjson.dumps(ev)


def generate(count: int, seed: int = 0, mix: Mapping[str, float] | None = None) -> Iterator[bytes]:
    """Yield ``count`` compact JSON event lines (no trailing newline), deterministic for a given ``seed``.

    ``mix`` maps scenario names (module docstring, :data:`SCENARIOS`) to relative weights; names left out get
    weight 0; ``None`` means the default mix :data:`SCENARIOS`.
    """
    return (line for _, line in generate_tagged(count, seed, mix))


def write_file(path: str | Path, count: int, seed: int = 0) -> None:
    """Stream ``count`` newline-terminated events to ``path`` (a file path or ``"-"`` for stdout)."""
    with open(path, "wb") if str(path) != "-" else nullcontext(sys.stdout.buffer) as f:
        for line in generate(count, seed):
            f.write(line + b"\n")
        f.flush()


def wrap_cri(line: bytes, ts: str = "2024-01-01T00:00:00.123456789Z", stream: str = "stdout") -> bytes:
    """CRI container-log line ``<ts> <stream> F <json>``."""
    return f"{ts} {stream} F ".encode() + line


def wrap_fluentbit(line: bytes) -> bytes:
    """Fluent Bit record with the event as the ``log`` string."""
    return orjson.dumps({"date": 1704067200.123457, "log": line.decode(), "stream": "stdout", "kubernetes": {
        "namespace_name": "kube-system", "pod_name": "tetragon-7xk2p", "container_name": "export-stdout"}})


def wrap_vector(line: bytes) -> bytes:
    """Vector file-source record with the event as the ``message`` string."""
    return orjson.dumps({"file": "/var/run/cilium/tetragon/tetragon.log", "host": _NODES[0], "message": line.decode(),
                         "source_type": "file", "timestamp": "2024-01-01T00:00:00.123456789Z"})


def wrap_object(line: bytes, key: str = "log") -> bytes:
    """Record holding the event as a nested JSON object under ``key`` (event bytes kept verbatim)."""
    return b'{"stream":"stdout",' + orjson.dumps(key) + b":" + line + b"}"


def bad_lines(seed: int = 0) -> list[bytes]:
    """Malformed inputs a consumer must survive, deterministic for ``seed``.

    In order: not JSON, JSON array, JSON string, truncated event, binary garbage with NUL and invalid UTF-8,
    invalid UTF-8 inside a JSON string, raw NUL inside a JSON string, ``{}``, a ~10 MB (otherwise valid)
    process_exec, a CRI line with a non-JSON payload, a process_exec without ``process``, a bare number, ``b""``.
    """
    r = random.Random(seed)
    good = next(generate(1, seed, {"exec": 1}))
    return [
        b"this is not json at all", b'[{"process_exec":{}}]', b'"process_exec"', good[: len(good) // 2],
        bytes(r.getrandbits(8) for _ in range(64)) + b"\x00\xff\xfe",
        b'{"process_exec":{"process":{"binary":"/tmp/\xff\xfe\xc3"}},"node_name":"n1"}',
        b'{"process_exec":{"process":{"binary":"/bin/a\x00b"}},"node_name":"n1"}',
        b"{}",
        b'{"process_exec":{"process":{"binary":"/usr/bin/big","arguments":"' + b"A" * (10 << 20)
        + b'"}},"node_name":"n1"}',
        wrap_cri(b"panic: runtime error: invalid memory address", stream="stderr"),
        b'{"process_exec":{"parent":{"binary":"/bin/sh"}},"node_name":"n1","time":"2024-05-14T09:00:00Z"}',
        b"42", b"",
    ]


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m tests.support.synth --count N --seed S [--out FILE]`` (streams, flat memory)."""
    ap = argparse.ArgumentParser(description="Generate synthetic Tetragon JSON events (one per line).")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="-", help="output file (default: stdout)")
    a = ap.parse_args(argv)
    try:
        write_file(a.out, a.count, a.seed)
    except BrokenPipeError:  # stdout piped into e.g. `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
