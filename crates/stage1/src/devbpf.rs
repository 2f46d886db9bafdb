//! The device policy on the unified cgroup hierarchy: a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program built from the pod's allow-list ([`crate::devices::allowed`])
//! and attached to the pod's cgroup (cgroup v2 has no `devices.allow`).
//!
//! The program is eBPF, assembled here (as crun does): for each rule, a
//! block that falls through to "allow" when the device's type, access,
//! major and minor match, and jumps to the next block otherwise; after the
//! last block, "deny". The kernel's verifier checks it at load time.

use std::os::fd::AsFd;
use std::path::Path;

use crate::Stage1Error;
use crate::devices::{Kind, MKNOD, READ, Rule, WRITE};

pub use crate::sys::bpf::Insn;

// Opcodes.
const LDX_W_MEM: u8 = 0x61; // BPF_LDX | BPF_W | BPF_MEM
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }:
// access_type is (access << 16) | type.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR
const ACC_MKNOD: i32 = 1; // BPF_DEVCG_ACC_MKNOD
const ACC_READ: i32 = 2; // BPF_DEVCG_ACC_READ
const ACC_WRITE: i32 = 4; // BPF_DEVCG_ACC_WRITE

// Registers: r1 the context (then scratch), r2 type, r3 access, r4 major,
// r5 minor, r0 the verdict.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The access bits a rule allows, in the program's encoding.
fn access_bits(rule: &Rule) -> i32 {
    let mut bits = 0;
    for (ours, theirs) in [(READ, ACC_READ), (WRITE, ACC_WRITE), (MKNOD, ACC_MKNOD)] {
        if rule.access & ours != 0 {
            bits |= theirs;
        }
    }
    bits
}

/// The block of one rule: jumps past its end when the device does not
/// match, returns 1 (allow) when it does.
fn block(rule: &Rule) -> Vec<Insn> {
    // (instruction, jumps to the next block when taken)
    let mut body: Vec<(Insn, bool)> = Vec::new();
    match rule.kind {
        Kind::Char => body.push((insn(JNE_K, R2, 0, 0, DEV_CHAR), true)),
        Kind::Block => body.push((insn(JNE_K, R2, 0, 0, DEV_BLOCK), true)),
        Kind::All => {}
    }
    let allowed = access_bits(rule);
    if allowed != ACC_MKNOD | ACC_READ | ACC_WRITE {
        // Any requested access outside the rule's: not this rule.
        body.push((insn(ALU32_MOV_X, R1, R3, 0, 0), false));
        body.push((insn(ALU32_AND_K, R1, 0, 0, !allowed), false));
        body.push((insn(JNE_K, R1, 0, 0, 0), true));
    }
    if let Some(major) = rule.major {
        body.push((insn(JNE_K, R4, 0, 0, major as i32), true));
    }
    if let Some(minor) = rule.minor {
        body.push((insn(JNE_K, R5, 0, 0, minor as i32), true));
    }
    body.push((insn(ALU64_MOV_K, R0, 0, 0, 1), false));
    body.push((insn(EXIT, 0, 0, 0, 0), false));
    let len = body.len();
    body.into_iter()
        .enumerate()
        .map(|(i, (mut ins, to_next))| {
            if to_next {
                ins.off = (len - i - 1) as i16;
            }
            ins
        })
        .collect()
}

/// The whole program for `rules`.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W_MEM, R2, R1, CTX_ACCESS_TYPE, 0),
        insn(ALU32_AND_K, R2, 0, 0, 0xffff),
        insn(LDX_W_MEM, R3, R1, CTX_ACCESS_TYPE, 0),
        insn(ALU32_RSH_K, R3, 0, 0, 16),
        insn(LDX_W_MEM, R4, R1, CTX_MAJOR, 0),
        insn(LDX_W_MEM, R5, R1, CTX_MINOR, 0),
    ];
    for rule in rules {
        p.extend(block(rule));
    }
    p.push(insn(ALU64_MOV_K, R0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Loads the device program for `allowed` and attaches it to the cgroup
/// directory `cgroup` (with other programs of its ancestors, all of which
/// must allow). It stays attached after this process exits, until the
/// cgroup is removed.
pub fn attach(cgroup: &Path, allowed: &[Rule]) -> Result<(), Stage1Error> {
    let program = program(allowed);
    let prog =
        crate::sys::bpf::load_device_program(&program, "skiff_device").map_err(|source| {
            Stage1Error::Setup {
                what: "load the device policy (a BPF cgroup device program)".to_string(),
                source,
            }
        })?;
    let dir = std::fs::File::open(cgroup).map_err(|e| Stage1Error::Setup {
        what: format!("open the cgroup {}", cgroup.display()),
        source: e,
    })?;
    crate::sys::bpf::attach_device_program(dir.as_fd(), prog.as_fd()).map_err(|source| {
        Stage1Error::Setup {
            what: format!("attach the device policy to {}", cgroup.display()),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::ALLOWED;

    /// Runs the program on a device access, as the kernel would.
    fn eval(p: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access as u32) << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
            pc += 1;
            match i.code {
                LDX_W_MEM => {
                    assert_eq!(src, 1, "loads come from the context");
                    r[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                ALU32_AND_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
                ALU32_RSH_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                ALU32_MOV_X => r[dst] = u64::from(r[src] as u32),
                ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_allow_list_and_nothing_else() {
        let p = program(&ALLOWED);
        let rw = ACC_READ | ACC_WRITE;
        for (major, minor) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 2),
            (136, 0),
            (136, 7),
        ] {
            assert_eq!(eval(&p, DEV_CHAR, rw, major, minor), 1, "c {major}:{minor}");
        }
        // Host disks, /dev/mem, /dev/kvm, loop devices: refused.
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 8, 0), 0);
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 7, 0), 0);
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 1), 0);
        assert_eq!(eval(&p, DEV_CHAR, rw, 10, 232), 0);
        // The host's console.
        assert_eq!(eval(&p, DEV_CHAR, rw, 5, 1), 0);
        // A block device with a char device's numbers is not that device.
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 1, 3), 0);
        // Nodes of anything may be made; making and reading at once may not.
        assert_eq!(eval(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 1);
        assert_eq!(eval(&p, DEV_CHAR, ACC_MKNOD, 10, 232), 1);
        assert_eq!(eval(&p, DEV_CHAR, ACC_MKNOD | ACC_READ, 10, 232), 0);
    }

    /// Where this host has a cgroup2 hierarchy: the root (v2) or the
    /// hybrid layout's `unified` mount.
    fn unified() -> Option<&'static Path> {
        ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .map(Path::new)
            .find(|p| rustix::fs::statfs(*p).is_ok_and(|s| s.f_type == libc::CGROUP2_SUPER_MAGIC))
    }

    /// Opens `node` from a shell moved into `cgroup` (or left where it is).
    fn opens(node: &Path, cgroup: Option<&Path>) -> std::process::Output {
        let join = cgroup.map_or(String::new(), |c| {
            format!("echo $$ > {}/cgroup.procs && ", c.display())
        });
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{join}: < {}", node.display()))
            .output()
            .expect("sh runs")
    }

    #[test]
    fn the_kernel_enforces_the_program() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("not root: the kernel check needs root (CI runs as root)");
            return;
        }
        let Some(unified) = unified() else {
            eprintln!("no cgroup2 hierarchy on this host: nothing to attach to");
            return;
        };
        let cgroup = unified.join(format!("skiff-devbpf-test-{}", std::process::id()));
        std::fs::create_dir(&cgroup).expect("create a test cgroup");
        let nodes = tempfile::tempdir().expect("tempdir");
        let node = |name: &str, minor: u32| {
            let path = nodes.path().join(name);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::from_raw_mode(0o600),
                rustix::fs::makedev(1, minor),
            )
            .expect("mknod");
            path
        };
        // /dev/kmsg: not on the allow-list, and present in every kernel.
        let (null, mem) = (node("null", 3), node("kmsg", 11));
        let result = attach(&cgroup, &ALLOWED).map(|()| {
            (
                opens(&null, Some(cgroup.as_path())),
                opens(&mem, Some(cgroup.as_path())),
                opens(&mem, None),
            )
        });
        let _ = std::fs::remove_dir(&cgroup);
        let (inside_null, inside_mem, outside_mem) = result.expect("attach the program");
        assert!(inside_null.status.success(), "{inside_null:?}");
        assert!(
            !inside_mem.status.success(),
            "/dev/kmsg opened under the policy"
        );
        assert!(
            String::from_utf8_lossy(&inside_mem.stderr).contains("not permitted"),
            "{inside_mem:?}"
        );
        // Outside the cgroup the same node opens: the check can fail.
        assert!(outside_mem.status.success(), "{outside_mem:?}");
    }
}
