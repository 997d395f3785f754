"""What a hook event (kprobe) does, independent of the output schema.

`classify_kprobe(body)` returns a `(kind, action)` pair that both mappings turn into their own
classes: OCSF class + activity, ECS `event.category` + `event.type`.  Kinds:

- `setid` / `set`: the `__sys_set*id` family the library's `setuid` category listens on (and the
  `__x64_sys_*` forms);
- `kmod` / `load`, `unload`: `security_kernel_module_request`, `security_kernel_read_file` with id 2
  (READING_MODULE), `do_init_module`, `find_module_sections`, `load_module`, `free_module`,
  `delete_module`, the init/finit/delete syscalls;
- `bpf_prog` / `load`: `bpf_check` (the verifier: a BPF program is being loaded);
- `kobj` / `bpf_map`, `perf_event`: `security_bpf_map_alloc`, `security_bpf_map_create`;
  `security_perf_event_alloc`;
- `net` / `connect`, `accept`, `close`, `listen`, `traffic`, `other`: by function (`NET_FUNCTIONS`);
  any other hook with a socket argument is `other`;
- `file` / `read`, `update`, `open`, `delete`, `rename`, `attr`, `create`, `mount`, `unmount`, `other`:
  by function (`FILE_FUNCTIONS`); any other hook whose first argument is a file or path is `other`;
- `call` / `syscall`, `function`: everything else: a kernel function (or system call) was invoked.

The kind depends on the function name and, for a few functions, on an argument
(`security_kernel_read_file`'s id, `security_file_permission`'s mask, `tcp_set_state`'s
new state); for unknown functions on which argument types it has.  Results are memoised
per function name (or per function and argument types), so each function is classified once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tetrapipe.formats._common import SOCKET_ARGS, first_arg, memo_put

Hook = tuple[str, str]

SETID_FUNCTIONS = ("__sys_setuid", "__sys_setgid", "__sys_setreuid", "__sys_setregid", "__sys_setresuid",
                   "__sys_setresgid", "__sys_setfsuid", "__sys_setfsgid")
NET_FUNCTIONS: dict[str, str] = {
    "tcp_connect": "connect", "tcp_v4_connect": "connect", "tcp_v6_connect": "connect",
    "security_socket_connect": "connect", "ip4_datagram_connect": "connect", "udp_connect": "connect",
    "tcp_create_openreq_child": "accept", "inet_csk_accept": "accept", "security_socket_accept": "accept",
    "tcp_close": "close", "sk_free": "close", "inet_release": "close", "tcp_fin": "close",
    "inet_csk_listen_start": "listen", "security_socket_listen": "listen",
    "tcp_sendmsg": "traffic", "tcp_recvmsg": "traffic", "udp_sendmsg": "traffic", "udp_recvmsg": "traffic",
    "tcp_cleanup_rbuf": "traffic", "security_socket_sendmsg": "traffic", "security_socket_recvmsg": "traffic",
}
FILE_FUNCTIONS: dict[str, str] = {
    "security_file_open": "open", "fd_install": "open", "do_sys_open": "open", "__x64_sys_openat": "open",
    "__x64_sys_read": "read", "vfs_read": "read", "__x64_sys_pread64": "read",
    "__x64_sys_write": "update", "vfs_write": "update", "__x64_sys_pwrite64": "update",
    "security_path_truncate": "update", "do_truncate": "update",
    "security_path_unlink": "delete", "security_inode_unlink": "delete", "security_path_rmdir": "delete",
    "security_path_rename": "rename", "security_inode_rename": "rename",
    "security_path_chmod": "attr", "security_path_chown": "attr", "security_inode_setattr": "attr",
    "security_path_mknod": "create", "security_path_mkdir": "create", "security_inode_create": "create",
    "security_path_link": "create", "security_path_symlink": "create",
    "security_sb_mount": "mount", "path_mount": "mount", "security_sb_umount": "unmount",
    "security_mmap_file": "other",
}
_KMOD: dict[str, str] = {
    "security_kernel_module_request": "load", "do_init_module": "load", "find_module_sections": "load",
    "load_module": "load", "security_kernel_load_data": "load", "__x64_sys_init_module": "load",
    "__x64_sys_finit_module": "load", "free_module": "unload", "delete_module": "unload",
    "__x64_sys_delete_module": "unload",
}
_READING_MODULE = 2  # enum kernel_read_file_id
_MAY_WRITE, _MAY_READ = 2, 4
_TCP_STATES = {1: "connect", 7: "close"}  # TCP_ESTABLISHED, TCP_CLOSE: the new state tcp_set_state gets
_FILE_ARGS = ("file_arg", "path_arg", "linux_binprm_arg")


def _read_file(body: dict[str, Any]) -> Hook:
    return ("kmod", "load") if first_arg(body, 1, "int_arg") == _READING_MODULE else ("file", "read")


def _file_permission(body: dict[str, Any]) -> Hook:
    mask = first_arg(body, 1, "int_arg")
    if type(mask) is int and mask & _MAY_WRITE:
        return "file", "update"
    if type(mask) is int and mask & _MAY_READ:
        return "file", "read"
    return "file", "other"


def _set_state(body: dict[str, Any]) -> Hook:
    state = first_arg(body, 1, "int_arg")
    return "net", _TCP_STATES.get(state, "other") if type(state) is int else "other"


_BY_ARGUMENT: dict[str, Callable[[dict[str, Any]], Hook]] = {
    "security_kernel_read_file": _read_file, "security_file_permission": _file_permission,
    "tcp_set_state": _set_state,
}
_STATIC: dict[str, Hook] = {
    **{f: ("setid", "set") for f in SETID_FUNCTIONS},
    **{"__x64_sys_" + f[6:]: ("setid", "set") for f in SETID_FUNCTIONS},
    **{f: ("kmod", a) for f, a in _KMOD.items()},
    "bpf_check": ("bpf_prog", "load"),
    "security_bpf_map_alloc": ("kobj", "bpf_map"), "security_bpf_map_create": ("kobj", "bpf_map"),
    "security_perf_event_alloc": ("kobj", "perf_event"),
    **{f: ("net", a) for f, a in NET_FUNCTIONS.items()},
    **{f: ("file", a) for f, a in FILE_FUNCTIONS.items()},
}
_DYNAMIC: dict[tuple[str, tuple[str, ...]], Hook] = {}


def classify_kprobe(body: dict[str, Any]) -> Hook:
    """(kind, action) of a `process_kprobe` body (see the module docstring)."""
    fn = body.get("function_name")
    if type(fn) is not str:
        fn = ""
    hit = _STATIC.get(fn)
    if hit is not None:
        return hit
    by_arg = _BY_ARGUMENT.get(fn)
    if by_arg is not None:
        return by_arg(body)
    args = body.get("args")
    kinds = tuple(next(iter(a), "") for a in args if type(a) is dict) if type(args) is list else ()
    ret = body.get("return")
    if type(ret) is dict and "sock_arg" in ret:
        kinds += ("return.sock_arg",)
    key = (fn, kinds)
    hook = _DYNAMIC.get(key)
    if hook is None:
        hook = _classify_by_arguments(fn, kinds)
        memo_put(_DYNAMIC, key, hook)
    return hook


def _classify_by_arguments(fn: str, kinds: tuple[str, ...]) -> Hook:
    if any(k in SOCKET_ARGS or k == "return.sock_arg" for k in kinds):
        return "net", "other"
    if kinds and kinds[0] in _FILE_ARGS:
        return "file", "other"
    return "call", "syscall" if is_syscall(fn) else "function"


def is_syscall(name: str) -> bool:
    """A system call's kernel entry point (`__x64_sys_write`, `__arm64_sys_openat`, `sys_read`, `__sys_setuid`)."""
    return name.startswith(("__x64_sys_", "__arm64_sys_", "__ia32_sys_", "__se_sys_", "__do_sys_", "sys_",
                            "__sys_", "ksys_"))


def file_path(body: dict[str, Any]) -> str | None:
    """The path of a hook's first file-like argument (`file_arg`, `path_arg`, `linux_binprm_arg`)."""
    args = body.get("args")
    if type(args) is list and args and type(args[0]) is dict:
        for kind in _FILE_ARGS:
            obj = args[0].get(kind)
            if type(obj) is dict and type(obj.get("path")) is str:
                return obj["path"]
    return None


def module_name(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(name, path) of the kernel module a `kmod` hook is about: `string_arg`, `module_arg.name` or a file path."""
    path = file_path(body)
    if path:
        return path.rpartition("/")[2] or path, path
    name = first_arg(body, 0, "string_arg")
    if type(name) is str and name:
        return name, None
    mod = first_arg(body, 0, "module_arg")
    if type(mod) is dict and type(mod.get("name")) is str:
        return mod["name"], None
    return None, None
