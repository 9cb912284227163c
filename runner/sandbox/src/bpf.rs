//! Classic BPF as seccomp runs it: evaluating one program or a whole filter
//! stack over a call (the policy checks use it), and merging a stack into
//! one equivalent program that finds a call's verdict by binary search over
//! the syscall number instead of seccompiler's linear chain (what the
//! sandbox installs).
//!
//! Why merge: installing a filter costs the kernel time in proportion to its
//! length and, through the per-syscall action cache it fills by emulating
//! the filter once for every syscall number, to the path each number walks.
//! seccompiler compiles the default policy to 342 instructions that every
//! number walks in order, plus two small filters (clone3, the x32 guard):
//! ~0.42 ms to install on the benchmark machine, about a twentieth of the
//! sandbox's start-up. Merged, it is one program of 108 instructions that
//! any number leaves after at most 7 comparisons (~0.09 ms to install).
//!
//! How: the programs are specialized by abstract interpretation. The
//! accumulator is tracked as "the syscall number", "the architecture", a
//! known constant, or unknown (a value loaded from the arguments or the
//! instruction pointer). The number line is cut at every constant a jump
//! compares with (k and k+1), so within one interval every comparison of the
//! syscall number comes out the same way. For each interval each program is
//! run with the number known: what depends only on the number and the
//! architecture is decided, what depends on the arguments is kept as a DAG
//! of the original instructions. The programs' verdicts are combined as the
//! kernel combines a stack, adjacent intervals with the same outcome are
//! joined, and a binary search over the intervals leads to each outcome.
//!
//! What the model does not cover makes [`merge`] return `None` (and the
//! stack is installed as it is, which is the same policy): scratch memory and
//! the X register, `jset` or arithmetic on the syscall number, a foreign
//! architecture's verdict depending on anything, and two programs of the
//! stack depending on the arguments of the same call. Besides being correct
//! by construction, a merge is compared with its stack on calls built from
//! every constant the stack compares with ([`first_difference`]): by the
//! build script for the built-in policies (a difference fails the build)
//! and by the tests.
//!
//! This file uses nothing of the crate: `build.rs` includes it.

use seccompiler::sock_filter;
use std::collections::HashMap;

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_ACTION_FULL: u32 = 0xffff_0000;
pub const RET_DATA: u32 = 0x0000_ffff;

pub const LD_W_ABS: u16 = 0x20;
pub const JMP_JA: u16 = 0x05;
pub const JMP_JEQ_K: u16 = 0x15;
pub const JMP_JGE_K: u16 = 0x35;
pub const RET_K: u16 = 0x06;
const RET_A: u16 = 0x16;

/// `seccomp_data` offsets of the syscall number and the architecture.
pub const DATA_NR: u32 = 0;
pub const DATA_ARCH: u32 = 4;
/// The kernel's limit on a program's length (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

/// The system-call arguments a filter sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub nr: i64,
    pub args: [u64; 6],
}

impl Call {
    /// A call with the given number and arguments (the rest zero).
    pub fn new(nr: i64, args: &[u64]) -> Call {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        Call { nr, args: a }
    }
}

pub fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

pub fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn compare(op: u16, a: u32, k: u32) -> Option<bool> {
    match op {
        0x10 => Some(a == k),
        0x20 => Some(a > k),
        0x30 => Some(a >= k),
        0x40 => Some(a & k != 0),
        _ => None,
    }
}

fn alu(op: u16, a: u32, k: u32) -> Option<u32> {
    Some(match op {
        0x00 => a.wrapping_add(k),
        0x10 => a.wrapping_sub(k),
        0x20 => a.wrapping_mul(k),
        0x40 => a | k,
        0x50 => a & k,
        0x60 => a.wrapping_shl(k),
        0x70 => a.wrapping_shr(k),
        0x80 => a.wrapping_neg(),
        0xa0 => a ^ k,
        _ => return None,
    })
}

/// Runs one program over `call` as the kernel would on architecture `arch`
/// (an AUDIT_ARCH value) and returns its raw return value. Supports what
/// seccomp filters here use (absolute word loads, ALU with constants,
/// conditional and unconditional jumps, returns); anything else evaluates to
/// kill, which makes a policy check fail loudly rather than pass.
pub fn evaluate(prog: &[sock_filter], call: &Call, arch: u32) -> u32 {
    run(prog, call, arch, &mut false)
}

/// [`evaluate`], setting `reads_args` when the program loads an argument or
/// the instruction pointer. A run that does not cannot depend on them: up to
/// the first such load only the number and the architecture were seen.
fn run(prog: &[sock_filter], call: &Call, arch: u32, reads_args: &mut bool) -> u32 {
    // struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&(call.nr as u32).to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, arg) in call.args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_ne_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    while let Some(ins) = prog.get(pc) {
        pc += 1;
        match ins.code & 0x07 {
            0x00 => {
                let off = ins.k as usize;
                if ins.code != LD_W_ABS || off % 4 != 0 || off + 4 > data.len() {
                    return RET_KILL_PROCESS;
                }
                *reads_args |= off >= 8;
                acc = u32::from_ne_bytes(data[off..off + 4].try_into().expect("4 bytes"));
            }
            0x04 => match (ins.code & 0x08, alu(ins.code & 0xf0, acc, ins.k)) {
                (0, Some(v)) => acc = v,
                _ => return RET_KILL_PROCESS,
            },
            0x05 => {
                if ins.code & 0x08 != 0 {
                    return RET_KILL_PROCESS;
                }
                let op = ins.code & 0xf0;
                if op == 0x00 {
                    pc += ins.k as usize;
                    continue;
                }
                match compare(op, acc, ins.k) {
                    Some(taken) => pc += if taken { ins.jt } else { ins.jf } as usize,
                    None => return RET_KILL_PROCESS,
                }
            }
            0x06 => {
                return match ins.code {
                    RET_K => ins.k,
                    RET_A => acc,
                    _ => RET_KILL_PROCESS,
                };
            }
            _ => return RET_KILL_PROCESS,
        }
    }
    RET_KILL_PROCESS
}

/// Whether return value `a` wins over `b` when the kernel combines a stack's
/// verdicts: the lower action, compared as a signed number (kill-process is
/// the lowest, allow the highest but for none).
fn wins(a: u32, b: u32) -> bool {
    ((a & RET_ACTION_FULL) as i32) < ((b & RET_ACTION_FULL) as i32)
}

/// The verdict of a stack whose programs returned `rets`, in install order:
/// the kernel runs the newest program first and replaces its verdict only by
/// a strictly lower action, so among equal actions the newest one's value
/// stands. An empty stack allows.
pub fn combine(rets: impl IntoIterator<Item = u32>) -> u32 {
    let mut best: Option<u32> = None;
    for r in rets {
        best = match best {
            Some(b) if wins(b, r) => Some(b),
            _ => Some(r),
        };
    }
    best.unwrap_or(RET_ALLOW)
}

/// What a whole stack (programs in install order) returns for `call`.
pub fn evaluate_stack(stack: &[Vec<sock_filter>], call: &Call, arch: u32) -> u32 {
    combine(stack.iter().map(|p| evaluate(p, call, arch)))
}

/// The accumulator as specialization knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Acc {
    Nr,
    Arch,
    Known(u32),
    Unknown,
}

/// A node of the specialized code: a return, an instruction that works on
/// an unknown value (a load of an argument or the instruction pointer, ALU
/// with a constant) and its successor, or a conditional jump on one.
/// Children are always interned before their parents, so an edge always
/// goes from a higher id to a lower one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Node {
    Ret(u32),
    Op {
        code: u16,
        k: u32,
        next: usize,
    },
    Jump {
        code: u16,
        k: u32,
        jt: usize,
        jf: usize,
    },
}

/// Hash-consed nodes: equal code gets one id, so equal outcomes of two
/// intervals are recognised by id.
#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    ids: HashMap<Node, usize>,
}

impl Graph {
    fn intern(&mut self, n: Node) -> usize {
        if let Some(&id) = self.ids.get(&n) {
            return id;
        }
        let id = self.nodes.len();
        self.nodes.push(n.clone());
        self.ids.insert(n, id);
        id
    }

    fn ret(&self, id: usize) -> Option<u32> {
        match self.nodes[id] {
            Node::Ret(v) => Some(v),
            _ => None,
        }
    }
}

/// Something outside the model: the stack stays as it is.
struct Unsupported;

/// What is known while specializing one program: the native architecture
/// `arch`, and the syscall number on it (a representative of the interval),
/// or `None` on the foreign-architecture path (any other architecture, where
/// the program must not depend on the number).
#[derive(Clone, Copy)]
struct Ctx {
    nr: Option<u32>,
    arch: u32,
}

impl Ctx {
    fn native(&self) -> bool {
        self.nr.is_some()
    }
}

struct Specializer<'a> {
    prog: &'a [sock_filter],
    ctx: Ctx,
    /// Maps a return value of this program to the stack's verdict.
    ret: &'a dyn Fn(u32) -> u32,
    memo: HashMap<(usize, Acc), usize>,
}

impl Specializer<'_> {
    fn run(
        prog: &[sock_filter],
        ctx: Ctx,
        ret: &dyn Fn(u32) -> u32,
        g: &mut Graph,
    ) -> Result<usize, Unsupported> {
        let mut s = Specializer {
            prog,
            ctx,
            ret,
            memo: HashMap::new(),
        };
        s.walk(g, 0, Acc::Known(0))
    }

    fn walk(&mut self, g: &mut Graph, start: usize, acc0: Acc) -> Result<usize, Unsupported> {
        if let Some(&id) = self.memo.get(&(start, acc0)) {
            return Ok(id);
        }
        let (mut pc, mut acc) = (start, acc0);
        let id = loop {
            let ins = self.prog.get(pc).ok_or(Unsupported)?;
            let op = ins.code & 0xf0;
            match ins.code & 0x07 {
                0x00 => {
                    if ins.code != LD_W_ABS {
                        return Err(Unsupported);
                    }
                    match ins.k {
                        DATA_NR => acc = Acc::Nr,
                        DATA_ARCH => acc = Acc::Arch,
                        8..=60 if ins.k % 4 == 0 => {
                            let next = self.walk(g, pc + 1, Acc::Unknown)?;
                            break g.intern(Node::Op {
                                code: ins.code,
                                k: ins.k,
                                next,
                            });
                        }
                        _ => return Err(Unsupported),
                    }
                    pc += 1;
                }
                0x04 => {
                    if ins.code & 0x08 != 0 {
                        return Err(Unsupported);
                    }
                    let known = match acc {
                        Acc::Known(v) => v,
                        Acc::Arch if self.ctx.native() => self.ctx.arch,
                        Acc::Unknown => {
                            alu(op, 0, ins.k).ok_or(Unsupported)?;
                            let next = self.walk(g, pc + 1, Acc::Unknown)?;
                            break g.intern(Node::Op {
                                code: ins.code,
                                k: ins.k,
                                next,
                            });
                        }
                        Acc::Nr | Acc::Arch => return Err(Unsupported),
                    };
                    acc = Acc::Known(alu(op, known, ins.k).ok_or(Unsupported)?);
                    pc += 1;
                }
                0x05 => {
                    if ins.code & 0x08 != 0 {
                        return Err(Unsupported);
                    }
                    if op == 0x00 {
                        pc = pc + 1 + ins.k as usize;
                        continue;
                    }
                    let taken = match acc {
                        Acc::Known(v) => compare(op, v, ins.k),
                        // jset would cut the number line at bits, not points
                        Acc::Nr if op != 0x40 => self.ctx.nr.and_then(|nr| compare(op, nr, ins.k)),
                        Acc::Nr => None,
                        Acc::Arch if self.ctx.native() => compare(op, self.ctx.arch, ins.k),
                        Acc::Arch => (op == 0x10 && ins.k == self.ctx.arch).then_some(false),
                        Acc::Unknown => {
                            compare(op, 0, ins.k).ok_or(Unsupported)?;
                            let jt = self.walk(g, pc + 1 + ins.jt as usize, Acc::Unknown)?;
                            let jf = self.walk(g, pc + 1 + ins.jf as usize, Acc::Unknown)?;
                            break g.intern(Node::Jump {
                                code: ins.code,
                                k: ins.k,
                                jt,
                                jf,
                            });
                        }
                    }
                    .ok_or(Unsupported)?;
                    pc += 1 + if taken { ins.jt } else { ins.jf } as usize;
                }
                0x06 => {
                    let v = match (ins.code, acc) {
                        (RET_K, _) => ins.k,
                        (RET_A, Acc::Known(v)) => v,
                        (RET_A, Acc::Arch) if self.ctx.native() => self.ctx.arch,
                        _ => return Err(Unsupported),
                    };
                    break g.intern(Node::Ret((self.ret)(v)));
                }
                _ => return Err(Unsupported),
            }
        };
        self.memo.insert((start, acc0), id);
        Ok(id)
    }
}

/// The stack's outcome in one context: every program specialized, their
/// verdicts combined. At most one program may depend on the arguments; its
/// returns become the combined verdicts.
fn outcome(stack: &[Vec<sock_filter>], ctx: Ctx, g: &mut Graph) -> Result<usize, Unsupported> {
    let same = |v: u32| v;
    let mut consts = Vec::with_capacity(stack.len());
    let mut dynamic = None;
    for (i, prog) in stack.iter().enumerate() {
        let id = Specializer::run(prog, ctx, &same, g)?;
        match g.ret(id) {
            Some(v) => consts.push(v),
            None if dynamic.is_none() => {
                dynamic = Some(i);
                consts.push(0); // replaced by the program's return below
            }
            None => return Err(Unsupported),
        }
    }
    match dynamic {
        None => Ok(g.intern(Node::Ret(combine(consts)))),
        Some(i) => {
            let with = |v: u32| {
                let mut rets = consts.clone();
                rets[i] = v;
                combine(rets)
            };
            Specializer::run(&stack[i], ctx, &with, g)
        }
    }
}

/// The cuts of the number line: every constant a jump compares with, and
/// the next number.
fn cuts(stack: &[Vec<sock_filter>]) -> Vec<u32> {
    let mut cuts = vec![0u32];
    for ins in stack.iter().flatten() {
        if ins.code & 0x07 == 0x05 && ins.code & 0xf0 != 0 {
            cuts.push(ins.k);
            cuts.extend(ins.k.checked_add(1));
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// One program equivalent to `stack` (programs in install order) on
/// architecture `arch`, or `None` when the stack uses something the merge
/// does not model (see the module comment) or the result would be too long.
pub fn merge(stack: &[Vec<sock_filter>], arch: u32) -> Option<Vec<sock_filter>> {
    if stack.is_empty() {
        return None;
    }
    let mut g = Graph::default();
    let foreign = outcome(stack, Ctx { nr: None, arch }, &mut g).ok()?;
    g.ret(foreign)?;
    let mut intervals: Vec<(u32, usize)> = Vec::new();
    for lo in cuts(stack) {
        let id = outcome(stack, Ctx { nr: Some(lo), arch }, &mut g).ok()?;
        if intervals.last().map(|&(_, last)| last) != Some(id) {
            intervals.push((lo, id));
        }
    }
    let prog = Emitter::default().program(&g, arch, foreign, &intervals)?;
    (prog.len() <= MAX_INSNS).then_some(prog)
}

/// A jump target before layout: an item, or the first item of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Item(usize),
    Node(usize),
}

#[derive(Debug, Clone, Copy)]
enum Item {
    /// Falls through to the next item.
    Plain {
        code: u16,
        k: u32,
    },
    Ja(Target),
    Cond {
        code: u16,
        k: u32,
        jt: Target,
        jf: Target,
    },
}

#[derive(Default)]
struct Emitter {
    items: Vec<Item>,
    node_item: HashMap<usize, usize>,
}

impl Emitter {
    fn push(&mut self, item: Item) -> usize {
        self.items.push(item);
        self.items.len() - 1
    }

    /// The binary search over `iv` (sorted, non-empty); returns its entry.
    fn tree(&mut self, iv: &[(u32, usize)]) -> Target {
        if let [(_, leaf)] = iv {
            return Target::Node(*leaf);
        }
        let at = self.push(Item::Ja(Target::Item(0)));
        let mid = iv.len() / 2;
        let jf = self.tree(&iv[..mid]);
        let jt = self.tree(&iv[mid..]);
        self.items[at] = Item::Cond {
            code: JMP_JGE_K,
            k: iv[mid].0,
            jt,
            jf,
        };
        Target::Item(at)
    }

    fn program(
        mut self,
        g: &Graph,
        arch: u32,
        foreign: usize,
        intervals: &[(u32, usize)],
    ) -> Option<Vec<sock_filter>> {
        self.push(Item::Plain {
            code: LD_W_ABS,
            k: DATA_ARCH,
        });
        self.push(Item::Cond {
            code: JMP_JEQ_K,
            k: arch,
            jt: Target::Item(2),
            jf: Target::Node(foreign),
        });
        self.push(Item::Plain {
            code: LD_W_ABS,
            k: DATA_NR,
        });
        let root = self.tree(intervals);
        if root != Target::Item(3) {
            // a single interval: no search was pushed, jump to its outcome
            self.push(Item::Ja(root));
        }
        // the nodes reached, parents (higher ids) before children
        let mut reached = vec![false; g.nodes.len()];
        let mut todo: Vec<usize> = intervals.iter().map(|&(_, id)| id).collect();
        todo.push(foreign);
        while let Some(id) = todo.pop() {
            if std::mem::replace(&mut reached[id], true) {
                continue;
            }
            match g.nodes[id] {
                Node::Ret(_) => {}
                Node::Op { next, .. } => todo.push(next),
                Node::Jump { jt, jf, .. } => todo.extend([jt, jf]),
            }
        }
        let order: Vec<usize> = (0..g.nodes.len()).rev().filter(|&id| reached[id]).collect();
        for (pos, &id) in order.iter().enumerate() {
            let first = match g.nodes[id] {
                Node::Ret(v) => self.push(Item::Plain { code: RET_K, k: v }),
                Node::Op { code, k, next } => {
                    let first = self.push(Item::Plain { code, k });
                    if order.get(pos + 1) != Some(&next) {
                        self.push(Item::Ja(Target::Node(next)));
                    }
                    first
                }
                Node::Jump { code, k, jt, jf } => self.push(Item::Cond {
                    code,
                    k,
                    jt: Target::Node(jt),
                    jf: Target::Node(jf),
                }),
            };
            self.node_item.insert(id, first);
        }
        self.layout()
    }

    /// Places the items, adding a long jump after a conditional one whose
    /// target is more than 255 instructions ahead, and encodes them.
    fn layout(mut self) -> Option<Vec<sock_filter>> {
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        loop {
            let mut pos = vec![0usize; self.items.len()];
            for (p, &i) in order.iter().enumerate() {
                pos[i] = p;
            }
            let resolve = |t: Target| -> Option<usize> {
                match t {
                    Target::Item(i) => Some(i),
                    Target::Node(id) => self.node_item.get(&id).copied(),
                }
            };
            let dist = |from: usize, t: Target| -> Option<usize> {
                let to = pos[resolve(t)?];
                to.checked_sub(pos[from] + 1)
            };
            let mut far = None;
            let mut out = Vec::with_capacity(order.len());
            for &i in &order {
                let ins = match self.items[i] {
                    Item::Plain { code, k } => stmt(code, k),
                    Item::Ja(t) => stmt(JMP_JA, u32::try_from(dist(i, t)?).ok()?),
                    Item::Cond { code, k, jt, jf } => {
                        let (dt, df) = (dist(i, jt)?, dist(i, jf)?);
                        match (u8::try_from(dt), u8::try_from(df)) {
                            (Ok(dt), Ok(df)) => jump(code, k, dt, df),
                            _ => {
                                far = Some((i, dt > 255, df > 255));
                                break;
                            }
                        }
                    }
                };
                out.push(ins);
            }
            let Some((i, t_far, f_far)) = far else {
                return Some(out);
            };
            let Item::Cond {
                code,
                k,
                mut jt,
                mut jf,
            } = self.items[i]
            else {
                unreachable!("only conditional jumps are far")
            };
            let mut at = pos[i] + 1;
            for (far, target) in [(t_far, &mut jt), (f_far, &mut jf)] {
                if far {
                    self.items.push(Item::Ja(*target));
                    *target = Target::Item(self.items.len() - 1);
                    order.insert(at, self.items.len() - 1);
                    at += 1;
                }
            }
            self.items[i] = Item::Cond { code, k, jt, jf };
        }
    }
}

/// Calls that tell a merge from its stack if anything differs: every cut of
/// the number line and the number before it with zero arguments and, for
/// the numbers whose verdict reads the arguments (native architecture), each
/// argument set in turn to zero, all ones, and every constant the stack
/// compares or masks with (in the low word, and in both words).
#[cfg_attr(not(test), allow(dead_code))] // used by build.rs and the tests
pub fn probe_calls(stack: &[Vec<sock_filter>], arch: u32) -> Vec<Call> {
    let cuts = cuts(stack);
    let mut values: Vec<u64> = vec![0, u64::MAX];
    for ins in stack.iter().flatten() {
        let class = ins.code & 0x07;
        if (class == 0x05 && ins.code & 0xf0 != 0) || class == 0x04 {
            let k = u64::from(ins.k);
            values.extend([k, k << 32 | k]);
        }
    }
    values.sort_unstable();
    values.dedup();
    let mut nrs: Vec<u32> = cuts.iter().flat_map(|&c| [c, c.wrapping_sub(1)]).collect();
    nrs.sort_unstable();
    nrs.dedup();
    let mut calls = Vec::new();
    for nr in nrs {
        let plain = Call::new(i64::from(nr), &[]);
        calls.push(plain);
        let mut reads_args = false;
        for prog in stack {
            run(prog, &plain, arch, &mut reads_args);
        }
        if !reads_args {
            continue;
        }
        for slot in 0..6 {
            for &v in &values {
                let mut call = plain;
                call.args[slot] = v;
                calls.push(call);
            }
        }
    }
    calls
}

/// The first of [`probe_calls`] on which `merged` and `stack` disagree, on
/// the native architecture and on a foreign one.
#[cfg_attr(not(test), allow(dead_code))] // used by build.rs and the tests
pub fn first_difference(
    stack: &[Vec<sock_filter>],
    merged: &[sock_filter],
    arch: u32,
) -> Option<(Call, u32)> {
    let calls = probe_calls(stack, arch);
    for a in [arch, arch ^ 1] {
        for call in &calls {
            if evaluate_stack(stack, call, a) != evaluate(merged, call, a) {
                return Some((*call, a));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARCH: u32 = 0xc000_003e;
    const EPERM: u32 = RET_ERRNO | 1;
    const RET_TRAP: u32 = 0x0003_0000;

    /// `body` after seccompiler's architecture check (a foreign one is
    /// killed).
    fn arch_checked(body: Vec<sock_filter>) -> Vec<sock_filter> {
        let mut p = vec![
            stmt(LD_W_ABS, DATA_ARCH),
            jump(JMP_JEQ_K, ARCH, 1, 0),
            stmt(RET_K, RET_KILL_PROCESS),
        ];
        p.extend(body);
        p
    }

    /// seccompiler's shape: arch check, then `jeq nr` blocks.
    fn deny(nrs: &[u32], action: u32) -> Vec<sock_filter> {
        let mut p = arch_checked(vec![stmt(LD_W_ABS, DATA_NR)]);
        for &nr in nrs {
            p.push(jump(JMP_JEQ_K, nr, 0, 1));
            p.push(stmt(RET_K, action));
        }
        p.push(stmt(RET_K, RET_ALLOW));
        p
    }

    /// Denies `nr` when argument `idx`'s low word has any bit of `mask`.
    fn deny_arg(nr: u32, idx: u32, mask: u32) -> Vec<sock_filter> {
        arch_checked(vec![
            stmt(LD_W_ABS, DATA_NR),
            jump(JMP_JEQ_K, nr, 0, 4),
            stmt(LD_W_ABS, 16 + 8 * idx),
            stmt(0x54, mask), // and
            jump(JMP_JEQ_K, 0, 1, 0),
            stmt(RET_K, EPERM),
            stmt(RET_K, RET_ALLOW),
        ])
    }

    fn merged(stack: &[Vec<sock_filter>]) -> Vec<sock_filter> {
        let m = merge(stack, ARCH).expect("mergeable");
        assert_eq!(first_difference(stack, &m, ARCH), None);
        m
    }

    #[test]
    fn combine_follows_the_kernel() {
        assert_eq!(combine([]), RET_ALLOW);
        assert_eq!(combine([RET_ALLOW, EPERM]), EPERM);
        assert_eq!(combine([RET_KILL_PROCESS, RET_TRAP]), RET_KILL_PROCESS);
        assert_eq!(combine([RET_KILL_THREAD, RET_TRAP]), RET_KILL_THREAD);
        // equal actions: the newest program's value stands
        assert_eq!(combine([RET_ERRNO | 38, EPERM]), EPERM);
        assert_eq!(combine([EPERM, RET_ERRNO | 38]), RET_ERRNO | 38);
    }

    #[test]
    fn a_deny_list_merges_into_a_search() {
        let nrs: Vec<u32> = (0..200).step_by(3).collect();
        let stack = vec![deny(&nrs, EPERM)];
        let m = merged(&stack);
        // a number outside every rule leaves after a handful of comparisons
        for nr in [1u32, 150, 199, 400] {
            let mut steps = 0;
            let mut pc = 0;
            while m[pc].code != RET_K {
                steps += 1;
                pc = match m[pc].code {
                    JMP_JGE_K => pc + 1 + if nr >= m[pc].k { m[pc].jt } else { m[pc].jf } as usize,
                    JMP_JEQ_K => {
                        pc + 1 + if ARCH == m[pc].k { m[pc].jt } else { m[pc].jf } as usize
                    }
                    _ => pc + 1,
                };
            }
            assert!(steps <= 12, "{nr}: {steps} steps");
        }
    }

    #[test]
    fn stacks_with_argument_checks_and_several_actions_merge() {
        let stack = vec![
            deny(&[56, 101, 165], EPERM),
            deny(&[435], RET_ERRNO | 38),
            deny_arg(16, 1, 0x5412),
            deny(&[101], RET_KILL_PROCESS),
        ];
        let m = merged(&stack);
        assert_eq!(evaluate(&m, &Call::new(16, &[0, 0x5412]), ARCH), EPERM);
        assert_eq!(evaluate(&m, &Call::new(16, &[0, 0x8000]), ARCH), RET_ALLOW);
        assert_eq!(evaluate(&m, &Call::new(101, &[]), ARCH), RET_KILL_PROCESS);
        assert_eq!(evaluate(&m, &Call::new(435, &[]), ARCH), RET_ERRNO | 38);
        assert_eq!(evaluate(&m, &Call::new(1, &[]), ARCH), RET_ALLOW);
        // a foreign architecture is killed, as seccompiler's check does
        assert_eq!(
            evaluate(&m, &Call::new(1, &[]), 0x4000_0003),
            RET_KILL_PROCESS
        );
    }

    #[test]
    fn an_allow_list_merges() {
        // allow only 0..=3 and 60; everything else EPERM
        let p = arch_checked(vec![
            stmt(LD_W_ABS, DATA_NR),
            jump(JMP_JGE_K, 4, 0, 2),
            jump(JMP_JEQ_K, 60, 1, 0),
            stmt(RET_K, EPERM),
            stmt(RET_K, RET_ALLOW),
        ]);
        let m = merged(&[p]);
        assert_eq!(evaluate(&m, &Call::new(2, &[]), ARCH), RET_ALLOW);
        assert_eq!(evaluate(&m, &Call::new(61, &[]), ARCH), EPERM);
        assert_eq!(evaluate(&m, &Call::new(0x4000_0002, &[]), ARCH), EPERM);
    }

    #[test]
    fn long_argument_code_gets_long_jumps() {
        // 300 argument checks for one call, all denying through one shared
        // return: the merged checks' jumps to it exceed 255 instructions
        let mut p = arch_checked(vec![
            stmt(LD_W_ABS, DATA_NR),
            jump(JMP_JEQ_K, 7, 1, 0),
            stmt(JMP_JA, 3 * 300),
        ]);
        for v in 0..300u32 {
            p.push(stmt(LD_W_ABS, 16));
            p.push(jump(JMP_JEQ_K, 1000 + v, 0, 1));
            p.push(stmt(RET_K, EPERM));
        }
        p.push(stmt(RET_K, RET_ALLOW));
        let nrs: Vec<u32> = (100..400).collect();
        let stack = vec![p, deny(&nrs, RET_ERRNO | 2)];
        let m = merged(&stack);
        assert!(
            m.iter().any(|i| i.code == JMP_JA),
            "no long jump was needed"
        );
        assert_eq!(evaluate(&m, &Call::new(7, &[1000]), ARCH), EPERM);
        assert_eq!(evaluate(&m, &Call::new(7, &[1299]), ARCH), EPERM);
        assert_eq!(evaluate(&m, &Call::new(7, &[1300]), ARCH), RET_ALLOW);
    }

    #[test]
    fn what_the_model_does_not_cover_is_left_alone() {
        // jset on the syscall number
        let jset = vec![
            stmt(LD_W_ABS, DATA_NR),
            jump(0x45, 0x4000_0000, 0, 1),
            stmt(RET_K, EPERM),
            stmt(RET_K, RET_ALLOW),
        ];
        assert!(merge(&[jset], ARCH).is_none());
        // arithmetic on the syscall number
        let alu_nr = vec![
            stmt(LD_W_ABS, DATA_NR),
            stmt(0x54, 0xff),
            jump(JMP_JEQ_K, 1, 0, 1),
            stmt(RET_K, EPERM),
            stmt(RET_K, RET_ALLOW),
        ];
        assert!(merge(&[alu_nr], ARCH).is_none());
        // two programs looking at the arguments of the same call
        assert!(merge(&[deny_arg(16, 1, 1), deny_arg(16, 2, 1)], ARCH).is_none());
        // scratch memory
        let st = vec![stmt(0x02, 0), stmt(RET_K, RET_ALLOW)];
        assert!(merge(&[st], ARCH).is_none());
        // falling off the end
        assert!(merge(&[vec![stmt(LD_W_ABS, DATA_NR)]], ARCH).is_none());
        assert!(merge(&[], ARCH).is_none());
    }

    #[test]
    fn first_difference_finds_a_wrong_merge() {
        let stack = vec![deny(&[56], EPERM), deny_arg(16, 1, 0x5412)];
        let mut m = merged(&stack);
        // break one return
        let at = m
            .iter()
            .rposition(|i| i.code == RET_K && i.k == EPERM)
            .unwrap();
        m[at].k = RET_ALLOW;
        assert!(first_difference(&stack, &m, ARCH).is_some());
    }

    #[test]
    fn ret_a_returns_the_accumulator() {
        let p = vec![stmt(LD_W_ABS, 16), stmt(RET_A, 0)];
        assert_eq!(evaluate(&p, &Call::new(0, &[EPERM as u64]), ARCH), EPERM);
    }
}
