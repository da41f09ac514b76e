//! Confinement of the Blender process: cleared environment, resource limits, a new
//! user + network namespace (no network), Landlock (read-only system, read-write work
//! dir, TCP denied) and a seccomp deny list. Each kernel layer is probed once; the
//! bridge uses every layer the kernel allows and reports which are active.
//!
//! Everything that allocates (Landlock ruleset, BPF program) is built in the parent;
//! the `pre_exec` hook in the forked child only makes system calls.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// The file descriptor the driver script writes its replies to.
pub const REPLY_FD: RawFd = 3;

/// System paths Blender may read (and execute) under Landlock. Measured with strace on
/// Debian's Blender 3.4: libraries and data under /usr, a few files in /etc, CPU and
/// memory facts in /proc and /sys. Nothing else on the system is readable; /etc/passwd,
/// /home and other processes' /proc entries are not.
const READ_ONLY_PATHS: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/fonts",
    "/etc/OpenCL",
    "/proc/meminfo",
    "/proc/cpuinfo",
    "/proc/filesystems",
    "/proc/sys/vm",
    "/sys/devices/system",
    "/sys/kernel/mm/transparent_hugepage",
    "/dev/urandom",
    "/dev/zero",
];
/// Device files Blender may also write to.
const READ_WRITE_DEVICES: &[&str] = &["/dev/null"];

// Landlock ABI (linux/landlock.h). The crate-free form keeps `pre_exec` allocation-free.
const LL_EXECUTE: u64 = 1 << 0;
const LL_WRITE_FILE: u64 = 1 << 1;
const LL_READ_FILE: u64 = 1 << 2;
const LL_READ_DIR: u64 = 1 << 3;
const LL_FS_V1: u64 = (1 << 13) - 1;
const LL_REFER: u64 = 1 << 13;
const LL_TRUNCATE: u64 = 1 << 14;
const LL_IOCTL_DEV: u64 = 1 << 15;
const LL_NET_BIND_TCP: u64 = 1 << 0;
const LL_NET_CONNECT_TCP: u64 = 1 << 1;
const LL_SCOPE_ABSTRACT_UNIX: u64 = 1 << 0;
const LL_SCOPE_SIGNAL: u64 = 1 << 1;
const LL_RULE_PATH_BENEATH: libc::c_int = 1;
const LL_CREATE_RULESET_VERSION: u32 = 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// How the child leaves the host's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetNs {
    /// A new user namespace and a new network namespace (works unprivileged).
    UserAndNet,
    /// Only a new network namespace (needs CAP_SYS_ADMIN, e.g. root without user ns).
    NetOnly,
}

/// Resource limits for one Blender process.
#[derive(Debug, Clone, Copy)]
pub struct ProcLimits {
    pub address_space_bytes: u64,
    /// Soft CPU limit (SIGXCPU); the parent moves it per tile.
    pub cpu_s: u64,
    /// Hard CPU limit (SIGKILL): the process's whole life.
    pub cpu_hard_s: u64,
    pub file_size_bytes: u64,
    pub open_files: u64,
}

/// The kernel layers found usable on this machine.
#[derive(Clone)]
pub struct Confinement {
    pub netns: Option<NetNs>,
    pub landlock_abi: Option<u32>,
    pub seccomp: Option<Arc<BpfProgram>>,
}

impl Confinement {
    /// Probe which layers the kernel allows (a trivial child per namespace flavour).
    pub fn probe() -> Confinement {
        let netns = [NetNs::UserAndNet, NetNs::NetOnly].into_iter().find(|ns| probe_netns(*ns));
        let landlock_abi = landlock_abi();
        let seccomp = match (seccomp_supported(), build_seccomp()) {
            (true, Ok(p)) => Some(Arc::new(p)),
            (_, Err(e)) => {
                tracing::warn!(error = %e, "seccomp filter does not build; layer off");
                None
            }
            (false, _) => None,
        };
        Confinement { netns, landlock_abi, seccomp }
    }

    /// Names of the active layers, for logs and `Bridge::active_layers`.
    pub fn layers(&self) -> Vec<String> {
        let mut v = vec![
            "workdir: fresh directory per scene, cap-std, fixed output path".to_string(),
            "env: cleared; HOME and TMPDIR in the work dir".to_string(),
            "blender: -b --factory-startup --disable-autoexec -noaudio, driver script only"
                .to_string(),
            "rlimits: address space, cpu seconds, file size, open files, no core dumps".to_string(),
            "wall-clock kill".to_string(),
        ];
        match self.netns {
            Some(NetNs::UserAndNet) => {
                v.push("netns: new user + network namespace (no network)".into())
            }
            Some(NetNs::NetOnly) => v.push("netns: new network namespace (no network)".into()),
            None => {}
        }
        if let Some(abi) = self.landlock_abi {
            let net = if abi >= 4 { ", TCP bind/connect denied" } else { "" };
            v.push(format!("landlock abi {abi}: system read-only, work dir read-write{net}"));
        }
        if self.seccomp.is_some() {
            v.push("seccomp: deny list (ptrace, mount, namespaces, bpf, modules, inet sockets, io_uring, ...)".into());
        }
        v
    }

    /// The layers the kernel did not allow.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.netns.is_none() {
            v.push("network namespace");
        }
        if self.landlock_abi.is_none() {
            v.push("landlock");
        }
        if self.seccomp.is_none() {
            v.push("seccomp");
        }
        v
    }

    /// Make `cmd` run confined: cleared env with HOME/TMPDIR under `rw_dir`, limits,
    /// namespaces, Landlock (read-only: system paths + `ro_dirs`; read-write: `rw_dir`)
    /// and seccomp. `reply` (if any) becomes the child's fd 3. Returns the Landlock
    /// ruleset, which must live until `cmd` has been spawned.
    pub fn apply(
        &self,
        cmd: &mut Command,
        program: &Path,
        ro_dirs: &[&Path],
        rw_dir: &Path,
        limits: ProcLimits,
        reply: Option<RawFd>,
    ) -> io::Result<Option<OwnedFd>> {
        cmd.env_clear()
            .env("HOME", rw_dir.join("home"))
            .env("TMPDIR", rw_dir.join("tmp"))
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C.UTF-8")
            .process_group(0);
        let ruleset = match self.landlock_abi {
            Some(abi) => {
                let mut ro: Vec<PathBuf> = READ_ONLY_PATHS.iter().map(PathBuf::from).collect();
                ro.extend(ro_dirs.iter().map(|p| p.to_path_buf()));
                // A Blender installed outside /usr (e.g. /opt/blender) reads its own tree.
                if let Some(dir) =
                    program.canonicalize().ok().and_then(|p| p.parent().map(Path::to_path_buf))
                {
                    ro.push(dir);
                }
                let mut rw: Vec<PathBuf> = READ_WRITE_DEVICES.iter().map(PathBuf::from).collect();
                rw.push(rw_dir.to_path_buf());
                Some(landlock_ruleset(abi, &ro, &rw)?)
            }
            None => None,
        };
        let ruleset_fd = ruleset.as_ref().map(|f| f.as_raw_fd());
        let netns = self.netns;
        let seccomp = self.seccomp.clone();
        let proc_self = CString::new("/proc/self").expect("no NUL");
        let landlock_abi = self.landlock_abi.unwrap_or(0);
        // SAFETY: the hook runs in the forked child before exec and only makes system
        // calls on values prepared above (no allocation, no locks).
        unsafe {
            cmd.pre_exec(move || {
                set_limit(libc::RLIMIT_AS, limits.address_space_bytes, limits.address_space_bytes)?;
                set_limit(libc::RLIMIT_CPU, limits.cpu_s, limits.cpu_hard_s)?;
                set_limit(libc::RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes)?;
                set_limit(libc::RLIMIT_NOFILE, limits.open_files, limits.open_files)?;
                set_limit(libc::RLIMIT_CORE, 0, 0)?;
                if let Some(fd) = reply
                    && libc::dup2(fd, REPLY_FD) < 0
                {
                    return Err(io::Error::last_os_error());
                }
                if let Some(ns) = netns {
                    let flags = match ns {
                        NetNs::UserAndNet => libc::CLONE_NEWUSER | libc::CLONE_NEWNET,
                        NetNs::NetOnly => libc::CLONE_NEWNET,
                    };
                    if libc::unshare(flags) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if let Some(fd) = ruleset_fd {
                    // The child's own /proc/self (status, maps, exe) can only be named
                    // here: opened in the parent it would be the parent's.
                    let me = libc::open(proc_self.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                    if me >= 0 {
                        let attr = PathBeneathAttr {
                            allowed_access: read_access(landlock_abi, true),
                            parent_fd: me,
                        };
                        libc::syscall(
                            libc::SYS_landlock_add_rule,
                            fd,
                            LL_RULE_PATH_BENEATH,
                            &attr,
                            0,
                        );
                        libc::close(me);
                    }
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::syscall(libc::SYS_landlock_restrict_self, fd, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if let Some(prog) = &seccomp {
                    seccompiler::apply_filter(prog).map_err(|e| match e {
                        seccompiler::Error::Seccomp(err) | seccompiler::Error::Prctl(err) => err,
                        _ => io::Error::other("seccomp"),
                    })?;
                }
                Ok(())
            });
        }
        Ok(ruleset)
    }
}

fn set_limit(res: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: plain system call on a stack value.
    if unsafe { libc::setrlimit(res, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn probe_netns(ns: NetNs) -> bool {
    let flags = match ns {
        NetNs::UserAndNet => libc::CLONE_NEWUSER | libc::CLONE_NEWNET,
        NetNs::NetOnly => libc::CLONE_NEWNET,
    };
    let mut cmd = Command::new("/bin/true");
    cmd.env_clear().stdin(std::process::Stdio::null());
    // SAFETY: only a system call in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(flags) == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
        });
    }
    matches!(cmd.status(), Ok(s) if s.success())
}

/// The kernel's Landlock ABI version, if Landlock is enabled.
pub fn landlock_abi() -> Option<u32> {
    // SAFETY: the documented version query (NULL attr, size 0).
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LL_CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v as u32)
}

fn fs_access(abi: u32) -> u64 {
    let mut a = LL_FS_V1;
    if abi >= 2 {
        a |= LL_REFER;
    }
    if abi >= 3 {
        a |= LL_TRUNCATE;
    }
    if abi >= 5 {
        a |= LL_IOCTL_DEV;
    }
    a
}

fn read_access(_abi: u32, dir: bool) -> u64 {
    if dir { LL_EXECUTE | LL_READ_FILE | LL_READ_DIR } else { LL_EXECUTE | LL_READ_FILE }
}

fn file_only(abi: u32) -> u64 {
    let mut a = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE;
    if abi >= 3 {
        a |= LL_TRUNCATE;
    }
    if abi >= 5 {
        a |= LL_IOCTL_DEV;
    }
    a
}

fn landlock_ruleset(abi: u32, ro: &[PathBuf], rw: &[PathBuf]) -> io::Result<OwnedFd> {
    let attr = RulesetAttr {
        handled_access_fs: fs_access(abi),
        handled_access_net: if abi >= 4 { LL_NET_BIND_TCP | LL_NET_CONNECT_TCP } else { 0 },
        scoped: if abi >= 6 { LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL } else { 0 },
    };
    let size = match abi {
        1..=3 => 8,
        4..=5 => 16,
        _ => std::mem::size_of::<RulesetAttr>(),
    };
    // SAFETY: attr outlives the call; size matches the fields the ABI knows.
    let fd = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, &attr, size, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    for (paths, write) in [(ro, false), (rw, true)] {
        for p in paths {
            let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) else { continue };
            // SAFETY: plain open of a NUL-terminated path.
            let pfd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            if pfd < 0 {
                continue; // a path this system lacks (e.g. /lib32) needs no rule
            }
            // SAFETY: pfd was just opened.
            let pfd = unsafe { OwnedFd::from_raw_fd(pfd) };
            let is_dir = std::fs::metadata(p).map(|m| m.is_dir()).unwrap_or(false);
            let access = match (write, is_dir) {
                (true, true) => fs_access(abi),
                (true, false) => file_only(abi),
                (false, d) => read_access(abi, d),
            };
            let rule = PathBeneathAttr { allowed_access: access, parent_fd: pfd.as_raw_fd() };
            // SAFETY: rule outlives the call.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_landlock_add_rule,
                    ruleset.as_raw_fd(),
                    LL_RULE_PATH_BENEATH,
                    &rule,
                    0u32,
                )
            };
            if rc != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!("landlock rule for {}: {e}", p.display()),
                ));
            }
        }
    }
    Ok(ruleset)
}

fn seccomp_supported() -> bool {
    // SAFETY: a query without side effects.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
}

/// System calls Blender never needs and an attacker would: debugging other processes,
/// mounting, new namespaces, kernel modules, BPF, keyrings, io_uring (which bypasses
/// seccomp), and IP/packet sockets (no network even where namespaces are unavailable).
fn build_seccomp() -> Result<BpfProgram, seccompiler::BackendError> {
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_syslog,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_adjtimex,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_fanotify_init,
        libc::SYS_mount_setattr,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
    ]
    .into_iter()
    .map(|nr| (nr, vec![]))
    .collect();
    let domain_is = |d: libc::c_int| {
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, d as u64)
            .and_then(|c| SeccompRule::new(vec![c]))
    };
    rules.insert(
        libc::SYS_socket,
        vec![domain_is(libc::AF_INET)?, domain_is(libc::AF_INET6)?, domain_is(libc::AF_PACKET)?],
    );
    let arch = seccompiler::TargetArch::try_from(std::env::consts::ARCH)?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    filter.try_into()
}
