"""Field names and types of Tetragon's event messages, as their protojson export spells them.

Contract: a read-only description of the messages reachable from the eleven event types of
``GetEventsResponse`` (``process_exec`` ... ``rate_limit_info``): for each message its fields
(name, number, type, repeated, oneof, map), for each enum its value names and numbers.  The
filters use it to type CEL expressions like Tetragon does (unknown field -> compile error, unset
field -> its default), to check field-filter paths at compile time, and to read enum names
(``CAP_SYS_ADMIN``) as numbers.

Source: the public API of cilium/tetragon (Apache-2.0), ``api/v1/tetragon/{tetragon,events,
capabilities,bpf}.proto`` at commit 4fbfe2d74ecb84acf79ed09a416f01b54185e8a6, reduced to names,
numbers and types (no comments, no options).  A field Tetragon adds later is unknown here: CEL
cannot name it (compile error) and field-filter paths to it are rejected; events carrying it still
pass through unchanged.

Table format: ``"name=number:type"`` separated by spaces; a type prefixed ``*`` is repeated, ``{}`` is
``map<string, string>``, a suffix ``@x`` puts the field in oneof ``x``.  ``Timestamp``,
``UInt32Value``, ``Int32Value``, ``BoolValue`` are the google.protobuf well-known types.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

EVENT_TYPES: dict[str, tuple[str, int, str]] = {
    # json key of GetEventsResponse.event -> (EventType name, number, message)
    "process_exec": ("PROCESS_EXEC", 1, "ProcessExec"),
    "process_exit": ("PROCESS_EXIT", 5, "ProcessExit"),
    "process_kprobe": ("PROCESS_KPROBE", 9, "ProcessKprobe"),
    "process_tracepoint": ("PROCESS_TRACEPOINT", 10, "ProcessTracepoint"),
    "process_loader": ("PROCESS_LOADER", 11, "ProcessLoader"),
    "process_uprobe": ("PROCESS_UPROBE", 12, "ProcessUprobe"),
    "process_throttle": ("PROCESS_THROTTLE", 27, "ProcessThrottle"),
    "process_lsm": ("PROCESS_LSM", 28, "ProcessLsm"),
    "process_usdt": ("PROCESS_USDT", 29, "ProcessUsdt"),
    "test": ("TEST", 40000, "Test"),
    "rate_limit_info": ("RATE_LIMIT_INFO", 40001, "RateLimitInfo"),
}
EVENT_TYPE_NUMBERS: dict[str, int] = {"UNDEF": 0, **{name: num for name, num, _ in EVENT_TYPES.values()}}
"""EventType enum: name -> number (``UNDEF`` is what an event of no known type has)."""

PROCESS_EVENT_TYPES = frozenset({"process_exec", "process_exit", "process_kprobe", "process_tracepoint",
                                 "process_uprobe", "process_usdt", "process_lsm", "process_loader"})
"""Types whose ``process``/``parent``/``ancestors`` Tetragon's filters read (helpers.ResponseGetProcess)."""

POLICY_EVENT_TYPES = frozenset({"process_kprobe", "process_tracepoint", "process_uprobe", "process_lsm"})
"""Types whose ``policy_name`` the policy_names filter reads (filters.GetPolicyName; not usdt)."""

WELL_KNOWN = frozenset({"Timestamp", "UInt32Value", "Int32Value", "BoolValue", "Duration"})
SCALARS = frozenset({"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "double", "float"})


class Field(NamedTuple):
    name: str
    number: int
    type: str  # scalar name, message name, enum name, well-known name, or "{}" for map<string, string>
    repeated: bool
    oneof: str | None

    @property
    def is_map(self) -> bool:
        return self.type == "{}"

    @property
    def is_message(self) -> bool:
        return self.type in MESSAGES


@cache
def fields(message: str) -> dict[str, Field]:
    """The fields of ``message`` by name (KeyError for an unknown message)."""
    out: dict[str, Field] = {}
    for spec in MESSAGES[message].split():
        name, rest = spec.split("=", 1)
        number, typ = rest.split(":", 1)
        typ, _, oneof = typ.partition("@")
        out[name] = Field(name, int(number), typ.lstrip("*"), typ.startswith("*"), oneof or None)
    return out


@cache
def enum_values(enum: str) -> dict[str, int]:
    """Value name -> number of ``enum``."""
    return {name: int(num) for name, _, num in (v.partition("=") for v in ENUMS[enum].split())}


MESSAGES: dict[str, str] = {
    "ProcessExec": "process=1:Process parent=2:Process ancestors=3:*Process",
    "ProcessExit": (
        "process=1:Process parent=2:Process signal=3:string status=4:uint32 time=5:Timestamp "
        "ancestors=6:*Process"
    ),
    "ProcessKprobe": (
        "process=1:Process parent=2:Process function_name=3:string args=4:*KprobeArgument "
        "return=5:KprobeArgument action=6:KprobeAction kernel_stack_trace=7:*StackTraceEntry "
        "policy_name=8:string return_action=9:KprobeAction message=10:string tags=11:*string "
        "user_stack_trace=12:*StackTraceEntry ancestors=13:*Process data=14:*KprobeArgument"
    ),
    "ProcessTracepoint": (
        "process=1:Process parent=2:Process subsys=4:string event=5:string args=6:*KprobeArgument "
        "policy_name=7:string action=8:KprobeAction message=9:string tags=10:*string ancestors=11:*Process"
    ),
    "ProcessLoader": "process=1:Process path=2:string buildid=3:bytes parent=4:Process ancestors=5:*Process",
    "ProcessUprobe": (
        "process=1:Process parent=2:Process path=3:string symbol=4:string policy_name=5:string "
        "message=6:string args=7:*KprobeArgument tags=8:*string ancestors=9:*Process offset=10:uint64 "
        "ref_ctr_offset=11:uint64 action=12:KprobeAction data=13:*KprobeArgument"
    ),
    "ProcessThrottle": "type=1:ThrottleType cgroup=2:string",
    "ProcessLsm": (
        "process=1:Process parent=2:Process function_name=3:string policy_name=5:string message=6:string "
        "args=7:*KprobeArgument action=8:KprobeAction tags=9:*string ancestors=10:*Process ima_hash=11:string"
    ),
    "ProcessUsdt": (
        "process=1:Process parent=2:Process path=3:string provider=4:string name=5:string "
        "policy_name=6:string message=7:string args=8:*KprobeArgument tags=9:*string ancestors=10:*Process "
        "action=11:KprobeAction flags=12:string"
    ),
    "Test": "arg0=1:uint64 arg1=2:uint64 arg2=3:uint64 arg3=4:uint64",
    "RateLimitInfo": "number_of_dropped_process_events=1:uint64",
    "Process": (
        "exec_id=1:string pid=2:UInt32Value uid=3:UInt32Value cwd=4:string binary=5:string arguments=6:string "
        "flags=7:string start_time=8:Timestamp auid=9:UInt32Value pod=10:Pod docker=11:string "
        "parent_exec_id=12:string refcnt=13:uint32 cap=14:Capabilities ns=15:Namespaces tid=16:UInt32Value "
        "process_credentials=17:ProcessCredentials binary_properties=18:BinaryProperties user=19:UserRecord "
        "in_init_tree=20:BoolValue environment_variables=21:*EnvVar"
    ),
    "KprobeArgument": (
        "string_arg=1:string@arg int_arg=2:int32@arg skb_arg=3:KprobeSkb@arg size_arg=4:uint64@arg "
        "bytes_arg=5:bytes@arg path_arg=6:KprobePath@arg file_arg=7:KprobeFile@arg "
        "truncated_bytes_arg=8:KprobeTruncatedBytes@arg sock_arg=9:KprobeSock@arg cred_arg=10:KprobeCred@arg "
        "long_arg=11:int64@arg bpf_attr_arg=12:KprobeBpfAttr@arg perf_event_arg=13:KprobePerfEvent@arg "
        "bpf_map_arg=14:KprobeBpfMap@arg uint_arg=15:uint32@arg user_namespace_arg=16:KprobeUserNamespace@arg "
        "capability_arg=17:KprobeCapability@arg label=18:string "
        "process_credentials_arg=19:ProcessCredentials@arg user_ns_arg=20:UserNamespace@arg "
        "module_arg=21:KernelModule@arg kernel_cap_t_arg=22:string@arg cap_inheritable_arg=23:string@arg "
        "cap_permitted_arg=24:string@arg cap_effective_arg=25:string@arg "
        "linux_binprm_arg=26:KprobeLinuxBinprm@arg net_dev_arg=27:KprobeNetDev@arg bpf_cmd_arg=28:BpfCmd@arg "
        "syscall_id=29:SyscallId@arg sockaddr_arg=30:KprobeSockaddr@arg bpf_prog_arg=31:KprobeBpfProg@arg "
        "error_arg=32:KprobeError@arg sockaddrun_arg=33:KprobeSockaddrUn@arg"
    ),
    "StackTraceEntry": "address=1:uint64 offset=2:uint64 symbol=3:string module=4:string",
    "Pod": (
        "namespace=1:string name=2:string uid=3:string container=4:Container pod_labels=5:{} "
        "workload=6:string workload_kind=7:string pod_annotations=8:{}"
    ),
    "Capabilities": "permitted=1:*CapabilitiesType effective=2:*CapabilitiesType inheritable=3:*CapabilitiesType",
    "Namespaces": (
        "uts=1:Namespace ipc=2:Namespace mnt=3:Namespace pid=4:Namespace pid_for_children=5:Namespace "
        "net=6:Namespace time=7:Namespace time_for_children=8:Namespace cgroup=9:Namespace user=10:Namespace"
    ),
    "ProcessCredentials": (
        "uid=1:UInt32Value gid=2:UInt32Value euid=3:UInt32Value egid=4:UInt32Value suid=5:UInt32Value "
        "sgid=6:UInt32Value fsuid=7:UInt32Value fsgid=8:UInt32Value securebits=9:*SecureBitsType "
        "caps=10:Capabilities user_ns=11:UserNamespace"
    ),
    "BinaryProperties": (
        "setuid=1:UInt32Value setgid=2:UInt32Value privileges_changed=3:*ProcessPrivilegesChanged "
        "file=4:FileProperties"
    ),
    "UserRecord": "name=1:string",
    "EnvVar": "Key=1:string Value=2:string",
    "KprobeSkb": (
        "hash=1:uint32 len=2:uint32 priority=3:uint32 mark=4:uint32 saddr=5:string daddr=6:string "
        "sport=7:uint32 dport=8:uint32 proto=9:uint32 sec_path_len=10:uint32 sec_path_olen=11:uint32 "
        "protocol=12:string family=13:string"
    ),
    "KprobePath": "mount=1:string path=2:string flags=3:string permission=4:string",
    "KprobeFile": "mount=1:string path=2:string flags=3:string permission=4:string",
    "KprobeTruncatedBytes": "bytes_arg=1:bytes orig_size=2:uint64",
    "KprobeSock": (
        "family=1:string type=2:string protocol=3:string mark=4:uint32 priority=5:uint32 saddr=6:string "
        "daddr=7:string sport=8:uint32 dport=9:uint32 cookie=10:uint64 state=11:string"
    ),
    "KprobeCred": "permitted=1:*CapabilitiesType effective=2:*CapabilitiesType inheritable=3:*CapabilitiesType",
    "KprobeBpfAttr": "ProgType=1:string InsnCnt=2:uint32 ProgName=3:string",
    "KprobePerfEvent": "KprobeFunc=1:string Type=2:string Config=3:uint64 ProbeOffset=4:uint64",
    "KprobeBpfMap": "MapType=1:string KeySize=2:uint32 ValueSize=3:uint32 MaxEntries=4:uint32 MapName=5:string",
    "KprobeUserNamespace": "level=1:Int32Value owner=2:UInt32Value group=3:UInt32Value ns=4:Namespace",
    "KprobeCapability": "value=1:Int32Value name=2:string",
    "UserNamespace": "level=1:Int32Value uid=2:UInt32Value gid=3:UInt32Value ns=4:Namespace",
    "KernelModule": "name=1:string signature_ok=2:BoolValue tainted=3:*TaintedBitsType",
    "KprobeLinuxBinprm": "path=1:string flags=2:string permission=3:string",
    "KprobeNetDev": "name=1:string",
    "SyscallId": "id=1:uint32 abi=2:string",
    "KprobeSockaddr": "family=1:string addr=2:string port=3:uint32",
    "KprobeBpfProg": "ProgType=1:string InsnCnt=2:uint32 ProgName=3:string",
    "KprobeError": "Message=1:string",
    "KprobeSockaddrUn": "family=1:string path=2:string",
    "Container": (
        "id=1:string name=2:string image=3:Image start_time=4:Timestamp pid=5:UInt32Value "
        "maybe_exec_probe=13:bool security_context=14:SecurityContext"
    ),
    "Namespace": "inum=1:uint32 is_host=2:bool",
    "FileProperties": "inode=1:InodeProperties path=2:string",
    "Image": "id=1:string name=2:string",
    "SecurityContext": "privileged=1:bool",
    "InodeProperties": "number=1:uint64 links=2:UInt32Value",
}

ENUMS: dict[str, str] = {
    "BpfCmd": (
        "BPF_MAP_CREATE=0 BPF_MAP_LOOKUP_ELEM=1 BPF_MAP_UPDATE_ELEM=2 BPF_MAP_DELETE_ELEM=3 "
        "BPF_MAP_GET_NEXT_KEY=4 BPF_PROG_LOAD=5 BPF_OBJ_PIN=6 BPF_OBJ_GET=7 BPF_PROG_ATTACH=8 "
        "BPF_PROG_DETACH=9 BPF_PROG_TEST_RUN=10 BPF_PROG_GET_NEXT_ID=11 BPF_MAP_GET_NEXT_ID=12 "
        "BPF_PROG_GET_FD_BY_ID=13 BPF_MAP_GET_FD_BY_ID=14 BPF_OBJ_GET_INFO_BY_FD=15 BPF_PROG_QUERY=16 "
        "BPF_RAW_TRACEPOINT_OPEN=17 BPF_BTF_LOAD=18 BPF_BTF_GET_FD_BY_ID=19 BPF_TASK_FD_QUERY=20 "
        "BPF_MAP_LOOKUP_AND_DELETE_ELEM=21 BPF_MAP_FREEZE=22 BPF_BTF_GET_NEXT_ID=23 BPF_MAP_LOOKUP_BATCH=24 "
        "BPF_MAP_LOOKUP_AND_DELETE_BATCH=25 BPF_MAP_UPDATE_BATCH=26 BPF_MAP_DELETE_BATCH=27 "
        "BPF_LINK_CREATE=28 BPF_LINK_UPDATE=29 BPF_LINK_GET_FD_BY_ID=30 BPF_LINK_GET_NEXT_ID=31 "
        "BPF_ENABLE_STATS=32 BPF_ITER_CREATE=33 BPF_LINK_DETACH=34 BPF_PROG_BIND_MAP=35 BPF_TOKEN_CREATE=36"
    ),
    "CapabilitiesType": (
        "CAP_CHOWN=0 DAC_OVERRIDE=1 CAP_DAC_READ_SEARCH=2 CAP_FOWNER=3 CAP_FSETID=4 CAP_KILL=5 CAP_SETGID=6 "
        "CAP_SETUID=7 CAP_SETPCAP=8 CAP_LINUX_IMMUTABLE=9 CAP_NET_BIND_SERVICE=10 CAP_NET_BROADCAST=11 "
        "CAP_NET_ADMIN=12 CAP_NET_RAW=13 CAP_IPC_LOCK=14 CAP_IPC_OWNER=15 CAP_SYS_MODULE=16 CAP_SYS_RAWIO=17 "
        "CAP_SYS_CHROOT=18 CAP_SYS_PTRACE=19 CAP_SYS_PACCT=20 CAP_SYS_ADMIN=21 CAP_SYS_BOOT=22 "
        "CAP_SYS_NICE=23 CAP_SYS_RESOURCE=24 CAP_SYS_TIME=25 CAP_SYS_TTY_CONFIG=26 CAP_MKNOD=27 CAP_LEASE=28 "
        "CAP_AUDIT_WRITE=29 CAP_AUDIT_CONTROL=30 CAP_SETFCAP=31 CAP_MAC_OVERRIDE=32 CAP_MAC_ADMIN=33 "
        "CAP_SYSLOG=34 CAP_WAKE_ALARM=35 CAP_BLOCK_SUSPEND=36 CAP_AUDIT_READ=37 CAP_PERFMON=38 CAP_BPF=39 "
        "CAP_CHECKPOINT_RESTORE=40"
    ),
    "KprobeAction": (
        "KPROBE_ACTION_UNKNOWN=0 KPROBE_ACTION_POST=1 KPROBE_ACTION_FOLLOWFD=2 KPROBE_ACTION_SIGKILL=3 "
        "KPROBE_ACTION_UNFOLLOWFD=4 KPROBE_ACTION_OVERRIDE=5 KPROBE_ACTION_COPYFD=6 KPROBE_ACTION_GETURL=7 "
        "KPROBE_ACTION_DNSLOOKUP=8 KPROBE_ACTION_NOPOST=9 KPROBE_ACTION_SIGNAL=10 KPROBE_ACTION_TRACKSOCK=11 "
        "KPROBE_ACTION_UNTRACKSOCK=12 KPROBE_ACTION_NOTIFYENFORCER=13 "
        "KPROBE_ACTION_CLEANUPENFORCERNOTIFICATION=14 KPROBE_ACTION_SET=15"
    ),
    "ProcessPrivilegesChanged": (
        "PRIVILEGES_CHANGED_UNSET=0 PRIVILEGES_RAISED_EXEC_FILE_CAP=1 PRIVILEGES_RAISED_EXEC_FILE_SETUID=2 "
        "PRIVILEGES_RAISED_EXEC_FILE_SETGID=3"
    ),
    "SecureBitsType": (
        "SecBitNotSet=0 SecBitNoRoot=1 SecBitNoRootLocked=2 SecBitNoSetUidFixup=4 SecBitNoSetUidFixupLocked=8 "
        "SecBitKeepCaps=16 SecBitKeepCapsLocked=32 SecBitNoCapAmbientRaise=64 "
        "SecBitNoCapAmbientRaiseLocked=128"
    ),
    "TaintedBitsType": (
        "TAINT_UNSET=0 TAINT_PROPRIETARY_MODULE=1 TAINT_FORCED_MODULE=2 TAINT_FORCED_UNLOAD_MODULE=4 "
        "TAINT_STAGED_MODULE=1024 TAINT_OUT_OF_TREE_MODULE=4096 TAINT_UNSIGNED_MODULE=8192 "
        "TAINT_KERNEL_LIVE_PATCH_MODULE=32768 TAINT_TEST_MODULE=262144"
    ),
    "ThrottleType": "THROTTLE_UNKNOWN=0 THROTTLE_START=1 THROTTLE_STOP=2",
}
