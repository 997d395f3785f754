"""Each shipped category rule, with the edge cases the library must get right."""

from __future__ import annotations

import pytest

from tests.support.events import POD, exec_event, kprobe_event, sock

# (description, event, expected categories)
CASES = [
    # tmp-execs: a prefix match on the path, configurable directories
    ("exec in /tmp", exec_event("/tmp/nc"), ("tmp-execs",)),
    ("exec in /var/tmp", exec_event("/var/tmp/x/y"), ("tmp-execs",)),
    ("exec in /dev/shm", exec_event("/dev/shm/payload"), ("tmp-execs",)),
    ("tmp elsewhere in the path is not /tmp", exec_event("/usr/lib/tmp/x"), ()),
    ("/tmpfoo is not /tmp", exec_event("/tmpfoo/bar"), ()),
    # sudo: the basename, not a substring
    ("sudo", exec_event("/usr/bin/sudo", "-i"), ("sudo",)),
    ("sudoedit", exec_event("/usr/bin/sudoedit", "/etc/hosts"), ("sudo",)),
    ("pseudo-tool is not sudo", exec_event("/home/u/pseudo-tool"), ()),
    ("sudoers-check is not sudo", exec_event("/usr/bin/sudoers-check"), ()),
    # suid: setuid/setgid present whatever the value, 0 included
    ("setuid 0 (root) counts", exec_event("/usr/bin/su", binary_properties={"setuid": 0}), ("suid",)),
    ("setgid 5", exec_event("/usr/bin/wall", binary_properties={"setgid": 5}), ("suid",)),
    ("memfd exec: only file", exec_event("/proc/self/fd/3", binary_properties={"file": {"inode": {"number": "7"}}}),
     ()),
    ("no binary_properties", exec_event("/usr/bin/id"), ()),
    ("sudo is also suid", exec_event("/usr/bin/sudo", "id", binary_properties={"setuid": 0}), ("sudo", "suid")),
    ("suid binary in /tmp", exec_event("/tmp/rootshell", binary_properties={"setuid": 0}), ("suid", "tmp-execs")),
    # ebpf
    ("bpf_check", kprobe_event("bpf_check", [{"bpf_attr_arg": {"ProgType": "BPF_PROG_TYPE_KPROBE", "InsnCnt": 9}}],
                               policy="bpf-library-policy"), ("ebpf",)),
    ("bpf map alloc", kprobe_event("security_bpf_map_alloc", [{"bpf_map_arg": {"MapType": "BPF_MAP_TYPE_HASH"}}]),
     ("ebpf",)),
    ("bpf map create", kprobe_event("security_bpf_map_create", [{"bpf_map_arg": {}}]), ("ebpf",)),
    ("perf event", kprobe_event("security_perf_event_alloc", [{"perf_event_arg": {}}]), ("ebpf",)),
    ("bpffs read", kprobe_event("security_file_permission", [{"file_arg": {"path": "/sys/fs/bpf/tc/globals/m"}},
                                                             {"int_arg": 4}]), ("ebpf",)),
    ("bpffs mmap", kprobe_event("security_mmap_file", [{"file_arg": {"path": "/sys/fs/bpf/x"}}]), ("ebpf",)),
    ("file permission elsewhere", kprobe_event("security_file_permission", [{"file_arg": {"path": "/etc/passwd"}}]),
     ()),
    ("bpffs function without args", kprobe_event("security_file_permission"), ()),
    # kernel-module
    ("module request", kprobe_event("security_kernel_module_request", [{"string_arg": "fs-xfs"}]),
     ("kernel-module",)),
    ("read_file READING_MODULE", kprobe_event("security_kernel_read_file",
                                              [{"file_arg": {"path": "/lib/modules/x.ko"}}, {"int_arg": 2}]),
     ("kernel-module",)),
    ("read_file other id", kprobe_event("security_kernel_read_file",
                                        [{"file_arg": {"path": "/lib/firmware/x"}}, {"int_arg": 3}]), ()),
    ("read_file id as a string is not 2", kprobe_event("security_kernel_read_file",
                                                       [{"file_arg": {"path": "/x"}}, {"int_arg": "2"}]), ()),
    # library
    ("loader", {"process_loader": {"process": {"binary": "/usr/bin/curl"}, "path": "/lib/libssl.so.3"},
                "time": "t"}, ("library",)),
    # setuid
    ("setresuid from privileges-setuid-root", kprobe_event("__sys_setresuid", [{"int_arg": -1}, {"int_arg": 0}],
                                                           policy="privileges-setuid-root"), ("setuid",)),
    ("setfsgid from privileges-raise", kprobe_event("__sys_setfsgid", [{"int_arg": 0}], policy="privileges-raise"),
     ("setuid",)),
    ("capset from privileges-raise is not setuid", kprobe_event("security_capset", policy="privileges-raise"), ()),
    ("setuid from another policy", kprobe_event("__sys_setuid", [{"int_arg": 0}], policy="my-policy"), ()),
    # ssh
    ("sshd tcp_close", kprobe_event("tcp_close", [sock("10.0.0.9", 51234, "10.0.0.5", 22)], binary="/usr/sbin/sshd",
                                    policy="accept"), ("ssh",)),
    ("sshd sk_alloc", kprobe_event("sk_alloc", [{"int_arg": 2}], binary="/usr/sbin/sshd"), ("ssh",)),
    ("curl tcp_close is not ssh", kprobe_event("tcp_close", [sock("104.198.14.52", 80)], binary="/usr/bin/curl"), ()),
    # egress (pod 10.244/16, service 10.96/12 configured in the fixture)
    ("tcp_connect to public", kprobe_event("tcp_connect", [sock("104.198.14.52", 80)]), ("egress",)),
    ("tcp_connect to pod", kprobe_event("tcp_connect", [sock("10.244.3.7", 80)]), ()),
    ("tcp_connect to service", kprobe_event("tcp_connect", [sock("10.96.0.10", 53)]), ()),
    ("tcp_connect to loopback", kprobe_event("tcp_connect", [sock("127.0.0.1", 8080)]), ()),
    ("tcp_connect to private (outside cluster)", kprobe_event("tcp_connect", [sock("192.168.1.20")]), ("egress",)),
    ("tcp_connect to metadata", kprobe_event("tcp_connect", [sock("169.254.169.254", 80)]), ("egress",)),
    ("tcp_connect to public v6", kprobe_event("tcp_connect", [sock("2606:4700::1111")]), ("egress",)),
    ("tcp_connect to mapped pod address", kprobe_event("tcp_connect", [sock("::ffff:10.244.0.3")]), ()),
    ("tcp_close to public is not egress", kprobe_event("tcp_close", [sock("104.198.14.52")]), ()),
    # other types pass through untagged
    ("exit", {"process_exit": {"process": {"binary": "/tmp/x"}}, "time": "t"}, ()),
    ("future type", {"process_future_thing": {"x": 1}, "time": "t"}, ()),
]


@pytest.mark.parametrize(("event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_shipped_rules(process_one, event, expected):
    env = process_one(event)
    assert env.error is None
    assert env.tags.categories == expected


@pytest.mark.parametrize(("event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rules_agree_on_generic_fallback(process_one, event, expected):
    """An event whose fields do not fit the typed models (node_name a number) is tagged the same way."""
    env = process_one({**event, "node_name": 12345})
    assert isinstance(env.decoded.vbody, dict)  # the generic path really ran
    assert env.tags.categories == expected
    assert env.tags.summaries == process_one(event).tags.summaries


def test_full_model_mismatch_keeps_the_lean_path(process_one):
    """pid as a string breaks only the full model: tagging stays on the lean view, summaries go generic."""
    event = exec_event("/tmp/x", "a")
    event["process_exec"]["process"]["pid"] = "not-a-number"
    env = process_one(event)
    assert not isinstance(env.decoded.vbody, dict) and isinstance(env.decoded.body, dict)
    assert env.tags.summaries == {"tmp-execs": "2024-05-14T09:00:00.123456789Z null null /tmp/x a"}


def test_groups_follow_categories(process_one):
    env = process_one(exec_event("/tmp/sudo", binary_properties={"setuid": 0}))
    assert env.tags.categories == ("sudo", "suid", "tmp-execs")
    assert env.tags.groups == ("security",)
    env = process_one(kprobe_event("tcp_connect", [sock("8.8.8.8")], binary="/usr/sbin/sshd"))
    assert env.tags.groups == ("network",)


def test_pod_fields_reach_summaries(process_one):
    env = process_one(exec_event("/tmp/nc", "ebpf.io 1234", pod=POD))
    assert env.tags.summaries["tmp-execs"] == "2024-05-14T09:00:00.123456789Z default xwing /tmp/nc ebpf.io 1234"
