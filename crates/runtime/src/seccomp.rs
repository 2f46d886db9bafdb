//! OCI seccomp profiles (`linux.seccomp`: Kubernetes' RuntimeDefault and
//! Localhost profiles are this JSON) compiled with
//! `skiff_stage1::filter` and installed through stage1's seam.
//!
//! * Only the native x86_64 ABI runs: a call of the i386 (`int 0x80`) or
//!   x32 ABI kills the process whatever `architectures` lists (their
//!   numbers mean other calls, so the profile's x86_64 rules cannot apply
//!   to them; a default-allow profile would otherwise allow every call it
//!   denies, through the other ABI).
//! * Names this build does not know (newer or other-architecture calls)
//!   are skipped, as libseccomp-based runtimes skip them.
//! * `SCMP_ACT_NOTIFY` (a listener process) is refused: not implemented.

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use skiff_stage1::filter::{self, Cmp, Cond, Filter, Rule};
use skiff_stage1::sys::seccomp::Insn;

use crate::{Result, RuntimeError};

/// A compiled profile and the flags to install it with.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub program: Vec<Insn>,
    pub flags: u32,
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<u32> {
    let errno = errno.unwrap_or(libc::EPERM as u32) & 0xffff;
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            filter::RET_KILL_THREAD
        }
        LinuxSeccompAction::ScmpActKillProcess => filter::RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => filter::RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => filter::RET_ERRNO | errno,
        LinuxSeccompAction::ScmpActTrace => filter::RET_TRACE | errno,
        LinuxSeccompAction::ScmpActAllow => filter::RET_ALLOW,
        LinuxSeccompAction::ScmpActLog => filter::RET_LOG,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(RuntimeError::Unsupported(
                "seccomp action SCMP_ACT_NOTIFY (a user-space listener) is not supported by skiff-runtime".into(),
            ));
        }
    })
}

fn cmp(op: LinuxSeccompOperator, value_two: Option<u64>) -> Cmp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => Cmp::Ne,
        LinuxSeccompOperator::ScmpCmpLt => Cmp::Lt,
        LinuxSeccompOperator::ScmpCmpLe => Cmp::Le,
        LinuxSeccompOperator::ScmpCmpEq => Cmp::Eq,
        LinuxSeccompOperator::ScmpCmpGe => Cmp::Ge,
        LinuxSeccompOperator::ScmpCmpGt => Cmp::Gt,
        // libseccomp: arg & value == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => Cmp::MaskedEq(value_two.unwrap_or(0)),
    }
}

/// Compiles a profile.
pub fn compile(profile: &LinuxSeccomp) -> Result<Compiled> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut rules = Vec::new();
    for sc in profile.syscalls().iter().flatten() {
        let act = action(sc.action(), sc.errno_ret())?;
        let args = sc.args().clone().unwrap_or_default();
        // libseccomp: conditions on the same argument are alternatives
        // only for MASKED_EQ-free lists; runc passes all of a rule's args
        // as one AND-ed rule. Same here.
        let conds: Vec<Cond> = args
            .iter()
            .map(|a| {
                let op = cmp(a.op(), a.value_two());
                // MASKED_EQ: the mask is `value`, the expected `valueTwo`.
                let (op, value) = match op {
                    Cmp::MaskedEq(expected) => (Cmp::MaskedEq(a.value()), expected),
                    other => (other, a.value()),
                };
                u8::try_from(a.index())
                    .map(|arg| Cond {
                        arg,
                        cmp: op,
                        value,
                    })
                    .map_err(|_| {
                        RuntimeError::Invalid(format!(
                            "seccomp rule argument index {} is out of range (0-5)",
                            a.index()
                        ))
                    })
            })
            .collect::<Result<_>>()?;
        for name in sc.names() {
            // Unknown names are skipped, as libseccomp does.
            let Some(nr) = skiff_stage1::syscalls::number(name) else {
                continue;
            };
            rules.push(Rule {
                nr,
                conds: conds.clone(),
                action: act,
            });
        }
    }
    // Rules with conditions first (per call, in the profile's order):
    // an unconditional rule would otherwise hide them.
    rules.sort_by_key(|r| r.conds.is_empty());
    let program = filter::compile(&Filter {
        rules,
        default,
        foreign_arch: filter::RET_KILL_PROCESS,
    })
    .map_err(|e| RuntimeError::Invalid(format!("seccomp profile: {e}")))?;
    let mut flags = 0u32;
    for f in profile.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            // TSYNC: the container's init has one thread.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        };
    }
    Ok(Compiled { program, flags })
}

/// Installs a compiled profile on this process (inherited across exec).
pub fn install(compiled: &Compiled) -> Result<()> {
    skiff_stage1::sys::seccomp::install_with_flags(&compiled.program, compiled.flags)
        .map_err(crate::io_err("install the seccomp profile"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_style_profile_compiles() {
        let profile: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
            "syscalls":[
              {"names":["read","write","no_such_call"],"action":"SCMP_ACT_ALLOW"},
              {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"}]},
              {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
              {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":38}
            ]}"#,
        )
        .unwrap();
        let c = compile(&profile).unwrap();
        assert!(c.program.len() > 10);
        let notify: LinuxSeccomp =
            serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#).unwrap();
        assert!(compile(&notify).is_err());
    }
}
