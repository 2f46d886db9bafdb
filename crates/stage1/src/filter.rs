//! General seccomp filters: ordered rules (a system call, conditions on its
//! arguments, an action) compiled to classic BPF. The OCI runtime
//! (`skiff-runtime`) compiles OCI seccomp profiles with it; [`crate::seccomp`]
//! keeps the appc isolators' policies. Both install through
//! [`crate::sys::seccomp::install`].
//!
//! Semantics: the native x86_64 ABI only (i386 and x32 calls get the
//! foreign-architecture action, since the same numbers mean other calls
//! there); rules of one call are tried in their order and the first whose
//! conditions all hold decides; a call with no matching rule gets the
//! default action.
//!
//! Layout: for each call, `jeq nr; ja next` and then its block, which ends
//! in a return, so any number of calls and rules fits (BPF's conditional
//! jumps reach only 255 instructions, `ja` reaches any).

use crate::sys::seccomp::Insn;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The kernel's limit on a filter's length.
pub const MAX_INSNS: usize = 4096;

pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x54;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARGS: u32 = 16;

/// How an argument is compared with a value (all 64 bits, unsigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `arg & mask == value`.
    MaskedEq(u64),
}

/// A condition on argument `arg` (0–5) of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    pub arg: u8,
    pub cmp: Cmp,
    pub value: u64,
}

/// A call, the conditions that must all hold, and the action then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub nr: u32,
    pub conds: Vec<Cond>,
    pub action: u32,
}

/// A whole filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub rules: Vec<Rule>,
    /// For calls no rule matched.
    pub default: u32,
    /// For calls of another ABI (i386, x32).
    pub foreign_arch: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("the seccomp filter has {0} instructions, more than the kernel's {MAX_INSNS}")]
    TooLong(usize),
    #[error("argument index {0} in a seccomp rule is out of range (0-5)")]
    BadArg(u8),
    #[error("a seccomp rule has too many conditions (more than 255 instructions)")]
    RuleTooLong,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// A conditional jump whose targets are given as instruction indexes
/// relative to the start of the block (`FAIL` = the block's end).
#[derive(Clone, Copy)]
enum Target {
    Next,
    Skip(u8),
    Fail,
}

struct Block {
    code: Vec<(Insn, Target, Target)>,
}

impl Block {
    fn stmt(&mut self, code: u16, k: u32) {
        self.code.push((stmt(code, k), Target::Next, Target::Next));
    }
    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.code.push((stmt(code, k), jt, jf));
    }
    /// The instructions, with `Fail` jumps resolved to the block's end;
    /// refused when that is out of a conditional jump's reach.
    fn finish(self) -> Result<Vec<Insn>, FilterError> {
        let len = self.code.len();
        self.code
            .into_iter()
            .enumerate()
            .map(|(i, (mut insn, jt, jf))| {
                let resolve = |t: Target| match t {
                    Target::Next => Ok(0),
                    Target::Skip(n) => Ok(n),
                    Target::Fail => u8::try_from(len - i - 1).map_err(|_| FilterError::RuleTooLong),
                };
                insn.jt = resolve(jt)?;
                insn.jf = resolve(jf)?;
                Ok(insn)
            })
            .collect()
    }
}

/// Code that falls through when `cond` holds and jumps to the end of the
/// block when not.
fn condition(b: &mut Block, cond: &Cond) {
    let lo_off = OFFSET_ARGS + 8 * u32::from(cond.arg);
    let hi_off = lo_off + 4;
    let (hi, lo) = ((cond.value >> 32) as u32, cond.value as u32);
    use Target::{Fail, Next, Skip};
    match cond.cmp {
        Cmp::Eq => {
            b.stmt(LD_W_ABS, hi_off);
            b.jump(JEQ_K, hi, Next, Fail);
            b.stmt(LD_W_ABS, lo_off);
            b.jump(JEQ_K, lo, Next, Fail);
        }
        Cmp::Ne => {
            b.stmt(LD_W_ABS, hi_off);
            b.jump(JEQ_K, hi, Next, Skip(2));
            b.stmt(LD_W_ABS, lo_off);
            b.jump(JEQ_K, lo, Fail, Next);
        }
        Cmp::MaskedEq(mask) => {
            b.stmt(LD_W_ABS, hi_off);
            b.stmt(ALU_AND_K, (mask >> 32) as u32);
            b.jump(JEQ_K, hi, Next, Fail);
            b.stmt(LD_W_ABS, lo_off);
            b.stmt(ALU_AND_K, mask as u32);
            b.jump(JEQ_K, lo, Next, Fail);
        }
        Cmp::Gt | Cmp::Ge => {
            let last = if cond.cmp == Cmp::Gt { JGT_K } else { JGE_K };
            b.stmt(LD_W_ABS, hi_off);
            b.jump(JGT_K, hi, Skip(3), Next);
            b.jump(JEQ_K, hi, Next, Fail);
            b.stmt(LD_W_ABS, lo_off);
            b.jump(last, lo, Next, Fail);
        }
        Cmp::Lt | Cmp::Le => {
            // Lt is "not Ge", Le is "not Gt" on the low word.
            let last = if cond.cmp == Cmp::Lt { JGE_K } else { JGT_K };
            b.stmt(LD_W_ABS, hi_off);
            b.jump(JGE_K, hi, Next, Skip(3));
            b.jump(JEQ_K, hi, Next, Fail);
            b.stmt(LD_W_ABS, lo_off);
            b.jump(last, lo, Fail, Next);
        }
    }
}

/// The BPF program of `filter`.
pub fn compile(filter: &Filter) -> Result<Vec<Insn>, FilterError> {
    let mut p = vec![
        stmt(LD_W_ABS, OFFSET_ARCH),
        Insn {
            code: JEQ_K,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH_X86_64,
        },
        stmt(RET_K, filter.foreign_arch),
        stmt(LD_W_ABS, OFFSET_NR),
        Insn {
            code: JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        stmt(RET_K, filter.foreign_arch),
    ];
    // Calls in the order they first appear, each with its rules in order.
    let mut calls: Vec<(u32, Vec<&Rule>)> = Vec::new();
    for rule in &filter.rules {
        if let Some(cond) = rule.conds.iter().find(|c| c.arg > 5) {
            return Err(FilterError::BadArg(cond.arg));
        }
        match calls.iter_mut().find(|(nr, _)| *nr == rule.nr) {
            Some((_, rules)) => rules.push(rule),
            None => calls.push((rule.nr, vec![rule])),
        }
    }
    for (nr, rules) in calls {
        let mut block = Vec::new();
        let mut unconditional = false;
        for rule in rules {
            if rule.conds.is_empty() {
                block.push(stmt(RET_K, rule.action));
                unconditional = true;
                break;
            }
            let mut b = Block { code: Vec::new() };
            for cond in &rule.conds {
                condition(&mut b, cond);
            }
            b.stmt(RET_K, rule.action);
            block.extend(b.finish()?);
        }
        if !unconditional {
            block.push(stmt(RET_K, filter.default));
        }
        p.push(Insn {
            code: JEQ_K,
            jt: 1,
            jf: 0,
            k: nr,
        });
        p.push(stmt(JA, u32::try_from(block.len()).unwrap_or(u32::MAX)));
        p.extend(block);
        if p.len() > MAX_INSNS {
            return Err(FilterError::TooLong(p.len()));
        }
    }
    p.push(stmt(RET_K, filter.default));
    if p.len() > MAX_INSNS {
        return Err(FilterError::TooLong(p.len()));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a program on a call as the kernel would.
    pub(crate) fn eval(p: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    acc = match i.k {
                        OFFSET_NR => nr,
                        OFFSET_ARCH => arch,
                        k => {
                            let n = ((k - OFFSET_ARGS) / 8) as usize;
                            if (k - OFFSET_ARGS).is_multiple_of(8) {
                                args[n] as u32
                            } else {
                                (args[n] >> 32) as u32
                            }
                        }
                    }
                }
                ALU_AND_K => acc &= i.k,
                JA => pc += i.k as usize,
                RET_K => return i.k,
                JEQ_K | JGT_K | JGE_K => {
                    let taken = match i.code {
                        JEQ_K => acc == i.k,
                        JGT_K => acc > i.k,
                        _ => acc >= i.k,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    const EPERM: u32 = RET_ERRNO | 1;

    fn one(cmp: Cmp, value: u64) -> Vec<Insn> {
        compile(&Filter {
            rules: vec![Rule {
                nr: 7,
                conds: vec![Cond { arg: 2, cmp, value }],
                action: RET_ALLOW,
            }],
            default: EPERM,
            foreign_arch: RET_KILL_PROCESS,
        })
        .unwrap()
    }

    #[test]
    fn comparisons_use_all_64_bits() {
        let values = [
            0u64,
            1,
            5,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_0000_0005,
            u64::MAX,
        ];
        type Holds = fn(u64, u64) -> bool;
        let ops: [(Cmp, Holds); 7] = [
            (Cmp::Eq, |a, v| a == v),
            (Cmp::Ne, |a, v| a != v),
            (Cmp::Lt, |a, v| a < v),
            (Cmp::Le, |a, v| a <= v),
            (Cmp::Gt, |a, v| a > v),
            (Cmp::Ge, |a, v| a >= v),
            (Cmp::MaskedEq(0xff_0000_00ff), |a, v| {
                a & 0xff_0000_00ff == v
            }),
        ];
        for (cmp, holds) in ops {
            for v in values {
                let p = one(cmp, v);
                for a in values {
                    let want = if holds(a, v) { RET_ALLOW } else { EPERM };
                    let got = eval(&p, AUDIT_ARCH_X86_64, 7, [0, 0, a, 0, 0, 0]);
                    assert_eq!(got, want, "{cmp:?} arg={a:#x} value={v:#x}");
                }
                // Another call is not affected.
                assert_eq!(eval(&p, AUDIT_ARCH_X86_64, 8, [0, 0, v, 0, 0, 0]), EPERM);
            }
        }
    }

    #[test]
    fn first_matching_rule_decides_and_other_abis_are_refused() {
        let f = Filter {
            rules: vec![
                Rule {
                    nr: 56,
                    conds: vec![Cond {
                        arg: 0,
                        cmp: Cmp::MaskedEq(0x7E02_0000),
                        value: 0,
                    }],
                    action: RET_ALLOW,
                },
                Rule {
                    nr: 1,
                    conds: vec![],
                    action: RET_ALLOW,
                },
                Rule {
                    nr: 56,
                    conds: vec![],
                    action: RET_ERRNO | 38,
                },
            ],
            default: EPERM,
            foreign_arch: RET_KILL_PROCESS,
        };
        let p = compile(&f).unwrap();
        assert_eq!(
            eval(&p, AUDIT_ARCH_X86_64, 56, [0x11, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            eval(&p, AUDIT_ARCH_X86_64, 56, [0x1000_0000, 0, 0, 0, 0, 0]),
            RET_ERRNO | 38
        );
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, 1, [0; 6]), RET_ALLOW);
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, 2, [0; 6]), EPERM);
        assert_eq!(eval(&p, 0x4000_0003, 1, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(
            eval(&p, AUDIT_ARCH_X86_64, 1 | X32_SYSCALL_BIT, [0; 6]),
            RET_KILL_PROCESS
        );
    }

    #[test]
    fn long_blocks_and_limits() {
        // Many conditional rules on one call: the block exceeds 255.
        let rules: Vec<Rule> = (0..100)
            .map(|v| Rule {
                nr: 135,
                conds: vec![Cond {
                    arg: 0,
                    cmp: Cmp::Eq,
                    value: v,
                }],
                action: RET_ALLOW,
            })
            .chain([Rule {
                nr: 0,
                conds: vec![],
                action: RET_ALLOW,
            }])
            .collect();
        let f = Filter {
            rules,
            default: EPERM,
            foreign_arch: EPERM,
        };
        let p = compile(&f).unwrap();
        assert!(p.len() > 255);
        assert_eq!(
            eval(&p, AUDIT_ARCH_X86_64, 135, [99, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            eval(&p, AUDIT_ARCH_X86_64, 135, [100, 0, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, 0, [0; 6]), RET_ALLOW);
        let bad = Filter {
            rules: vec![Rule {
                nr: 1,
                conds: vec![Cond {
                    arg: 6,
                    cmp: Cmp::Eq,
                    value: 0,
                }],
                action: RET_ALLOW,
            }],
            default: EPERM,
            foreign_arch: EPERM,
        };
        assert_eq!(compile(&bad), Err(FilterError::BadArg(6)));
        let huge = Filter {
            rules: (0..5000)
                .map(|nr| Rule {
                    nr,
                    conds: vec![],
                    action: RET_ALLOW,
                })
                .collect(),
            default: EPERM,
            foreign_arch: EPERM,
        };
        assert!(matches!(compile(&huge), Err(FilterError::TooLong(_))));
        // A rule whose failed condition would have to jump over more than
        // 255 instructions is refused, not cut short.
        let long = Filter {
            rules: vec![Rule {
                nr: 83,
                conds: (0..70)
                    .map(|i| Cond {
                        arg: 1,
                        cmp: Cmp::Eq,
                        value: if i < 64 { 0o1234 } else { 0o777 },
                    })
                    .collect(),
                action: RET_ALLOW,
            }],
            default: EPERM,
            foreign_arch: EPERM,
        };
        assert_eq!(compile(&long), Err(FilterError::RuleTooLong));
    }
}
