//! The devices cgroup of cgroup v2: a tiny eBPF program, written here
//! instruction by instruction, that the kernel runs each time a process
//! of the container opens or creates a device file.
//!
//! cgroup v1 had a `devices` controller with text files (`devices.allow`,
//! `devices.deny`, see `device_cgroup`). cgroup v2 has no such files: the
//! kernel instead runs a program of type `BPF_PROG_TYPE_CGROUP_DEVICE`
//! attached to the cgroup's directory. The program receives
//!
//! ```text
//! struct bpf_cgroup_dev_ctx {
//!     u32 access_type;   /* (access << 16) | type */
//!     u32 major;
//!     u32 minor;
//! };
//! ```
//!
//! where `type` is 1 for a block device and 2 for a character device, and
//! `access` is a bit mask of 1 (mknod), 2 (read) and 4 (write). It
//! returns 1 to allow and 0 to refuse (the caller gets `EPERM`, "Operation
//! not permitted"). Ours is a list of "if it is this rule, allow" blocks,
//! one per rule, and a final "refuse": an allow-list, exactly the rules
//! v1 gets, compiled. runc, crun and youki generate the same shape.
//!
//! eBPF is a small 64-bit machine inside the kernel: eleven registers
//! (`r0` holds the result, `r1` points at the context on entry), fixed
//! 8-byte instructions, jumps only forward for programs like this one. The
//! kernel's **verifier** checks every path of a program before accepting
//! it (no read out of bounds, no loop, every path ends in `exit` with `r0`
//! set), and explains a refusal in a log we ask for and show.
//!
//! Two system calls, through `bpf(2)` (no library: the lesson is that
//! there is no magic):
//! * `BPF_PROG_LOAD`: hands the instructions to the verifier and returns a
//!   file descriptor for the program (`bpftool prog load`);
//! * `BPF_PROG_ATTACH`: attaches it to a cgroup directory, opened as a
//!   file descriptor, for the hook `BPF_CGROUP_DEVICE`
//!   (`bpftool cgroup attach DIR device …`).
//!
//! Once attached, the cgroup holds the program: we close our descriptor,
//! and the kernel frees the program when the directory is removed.
//! Attaching without flags (not `BPF_F_ALLOW_MULTI`) keeps one program
//! per cgroup, and attaching again (a container started a second time)
//! replaces it.

use crate::device_cgroup::{Kind, Rule};
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One eBPF instruction, the kernel's `struct bpf_insn`: an opcode, two
/// 4-bit register numbers in one byte (destination in the low half), a
/// 16-bit offset (jumps and memory) and a 32-bit immediate value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Registers: r0 is the return value; r1 the context on entry; r1 to r5
// are free for us once the context is read.
pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
pub const R4: u8 = 4;
pub const R5: u8 = 5;

// Opcodes: an instruction class, an operation and a source (K: the
// immediate, X: a register). ALU is 32-bit arithmetic, JMP compares
// 64-bit registers (loads of 32-bit words zero-extend, so it works).
const BPF_LDX_MEM_W: u8 = 0x61; // class LDX (0x01) | MEM (0x60) | word (0x00)
const BPF_ALU_AND_K: u8 = 0x54; // class ALU (0x04) | AND (0x50) | K (0x00)
const BPF_ALU_RSH_K: u8 = 0x74; // class ALU | RSH (0x70) | K
const BPF_ALU_MOV_K: u8 = 0xb4; // class ALU | MOV (0xb0) | K
const BPF_ALU_MOV_X: u8 = 0xbc; // class ALU | MOV | X (0x08)
const BPF_JMP_JNE_K: u8 = 0x55; // class JMP (0x05) | JNE (0x50) | K
const BPF_JMP_JNE_X: u8 = 0x5d; // class JMP | JNE | X
const BPF_JMP_EXIT: u8 = 0x95; // class JMP | EXIT (0x90)

/// `access_type`'s low half: the kind of device.
pub const DEV_BLOCK: i32 = 1;
pub const DEV_CHAR: i32 = 2;
/// `access_type`'s high half: what the process asks to do.
pub const ACC_MKNOD: i32 = 1;
pub const ACC_READ: i32 = 2;
pub const ACC_WRITE: i32 = 4;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// `dst = *(u32 *)(src + off)`
pub fn load_word(dst: u8, src: u8, off: i16) -> Insn {
    insn(BPF_LDX_MEM_W, dst, src, off, 0)
}
/// `dst &= imm`
pub fn and(dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU_AND_K, dst, 0, 0, imm)
}
/// `dst >>= imm`
pub fn shift_right(dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU_RSH_K, dst, 0, 0, imm)
}
/// `dst = imm`
pub fn set(dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU_MOV_K, dst, 0, 0, imm)
}
/// `dst = src`
pub fn copy(dst: u8, src: u8) -> Insn {
    insn(BPF_ALU_MOV_X, dst, src, 0, 0)
}
/// `if dst != imm: skip the next off instructions`
pub fn skip_unless_equal(dst: u8, imm: i32, off: i16) -> Insn {
    insn(BPF_JMP_JNE_K, dst, 0, off, imm)
}
/// `if dst != src: skip the next off instructions`
pub fn skip_unless_same(dst: u8, src: u8, off: i16) -> Insn {
    insn(BPF_JMP_JNE_X, dst, src, off, 0)
}
/// `return r0`
pub fn exit() -> Insn {
    insn(BPF_JMP_EXIT, 0, 0, 0, 0)
}

/// A jump's offset before the end of its block is known.
const TO_NEXT_BLOCK: i16 = i16::MIN;

/// The access bits a rule's letters (`rwm`) allow.
pub fn access_bits(letters: &str) -> i32 {
    letters.chars().fold(0, |bits, c| {
        bits | match c {
            'm' => ACC_MKNOD,
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => 0,
        }
    })
}

// ANCHOR: program
/// The device filter for `rules`: allow what one of them allows, refuse
/// the rest.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    // r1 points at the context: read its three fields into r2..r5 once.
    let mut program = vec![
        load_word(R2, R1, 0), // r2 = ctx->access_type
        and(R2, 0xffff),      // r2 &= 0xffff: the type (1 block, 2 char)
        load_word(R3, R1, 0), // r3 = ctx->access_type
        shift_right(R3, 16),  // r3 >>= 16: the access (1 m, 2 r, 4 w)
        load_word(R4, R1, 4), // r4 = ctx->major
        load_word(R5, R1, 8), // r5 = ctx->minor
    ];
    for rule in rules {
        program.extend(rule_block(rule));
    }
    // No rule matched: refuse.
    program.extend([set(R0, 0), exit()]);
    program
}

/// One rule: a few tests, each skipping to the next block when it fails,
/// and "allow" when they all pass.
fn rule_block(rule: &Rule) -> Vec<Insn> {
    let mut block = Vec::new();
    let kind = match rule.kind {
        Kind::Block => Some(DEV_BLOCK),
        Kind::Char => Some(DEV_CHAR),
        Kind::All => None,
    };
    if let Some(kind) = kind {
        block.push(skip_unless_equal(R2, kind, TO_NEXT_BLOCK));
    }
    let allowed = access_bits(&rule.access);
    if allowed != ACC_MKNOD | ACC_READ | ACC_WRITE {
        // Everything asked for must be allowed: (asked & allowed) == asked.
        // The context pointer in r1 is not needed any more.
        block.push(copy(R1, R3));
        block.push(and(R1, allowed));
        block.push(skip_unless_same(R1, R3, TO_NEXT_BLOCK));
    }
    if let Some(major) = rule.major {
        block.push(skip_unless_equal(R4, major as i32, TO_NEXT_BLOCK));
    }
    if let Some(minor) = rule.minor {
        block.push(skip_unless_equal(R5, minor as i32, TO_NEXT_BLOCK));
    }
    block.push(set(R0, 1)); // allow
    block.push(exit());
    // A jump's offset counts the instructions it skips, from the one after
    // it: to the end of this block.
    let len = block.len();
    for (i, insn) in block.iter_mut().enumerate() {
        if insn.off == TO_NEXT_BLOCK {
            insn.off = (len - i - 1) as i16;
        }
    }
    block
}
// ANCHOR_END: program

// The kernel's numbers (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// The first fields of `union bpf_attr` for `BPF_PROG_LOAD`; the kernel
/// takes a shorter attribute than its own and treats the rest as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_PROG_ATTACH`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// `bpf(cmd, attr, sizeof attr)`.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live #[repr(C)] struct of the size we pass; any
    // pointers in it point at buffers the caller keeps alive for the call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

// ANCHOR: load
/// Hands `program` to the kernel's verifier; returns the loaded program.
/// A refusal carries the verifier's own explanation: writing its log
/// doubles the time a load takes, so it is only asked for, by loading a
/// second time, when the first attempt fails (what libbpf does too).
pub fn load(program: &[Insn]) -> Result<OwnedFd> {
    let error = match load_with_log(program, None) {
        Ok(fd) => return Ok(fd),
        Err(error) => error,
    };
    let mut log = vec![0u8; 64 * 1024];
    let _ = load_with_log(program, Some(&mut log));
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    let verifier = String::from_utf8_lossy(&log[..end]);
    let verifier = verifier.trim();
    let hint = match error.raw_os_error() {
        Some(libc::EPERM) => " — loading eBPF programs needs root (CAP_BPF or CAP_SYS_ADMIN)",
        Some(libc::EINVAL) if verifier.is_empty() => {
            " — this kernel may lack CONFIG_CGROUP_BPF; use CRABBOX_DEVICE_CGROUP=v1 on a host with the v1 devices controller"
        }
        _ => "",
    };
    let log = if verifier.is_empty() {
        String::new()
    } else {
        format!("; the verifier says: {}", verifier.replace('\n', " | "))
    };
    Err(Error::new(format!(
        "bpf(BPF_PROG_LOAD) of the device filter: {error}{hint}{log}"
    )))
}

/// One `BPF_PROG_LOAD`, with a buffer for the verifier's log or without.
fn load_with_log(program: &[Insn], log: Option<&mut [u8]>) -> std::io::Result<OwnedFd> {
    // Any license string works for this program type (only programs
    // calling GPL-only kernel helpers must say "GPL"; ours calls none).
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"crabbox_dev");
    let (log_level, log_size, log_buf) = match log {
        Some(log) => (1, log.len() as u32, log.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: name,
        ..ProgLoadAttr::default()
    };
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: the kernel just returned this new descriptor; it is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}
// ANCHOR_END: load

// ANCHOR: attach
/// Attaches a loaded device filter to the cgroup directory `dir`: from
/// now on, every process in that cgroup is filtered by it.
pub fn attach(dir: &Path, program: &OwnedFd) -> Result<()> {
    let cgroup = std::fs::File::open(dir)
        .map_err(|e| Error::new(format!("opening cgroup {}: {e}", dir.display())))?;
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        // No BPF_F_ALLOW_MULTI: one filter per cgroup, replaced on re-attach.
        attach_flags: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| {
        Error::new(format!(
            "bpf(BPF_PROG_ATTACH) of the device filter to {}: {e}",
            dir.display()
        ))
    })?;
    Ok(())
}
// ANCHOR_END: attach

/// Compiles `rules`, loads the program and attaches it to `dir`, narrated.
pub fn install(dir: &Path, rules: &[Rule]) -> Result<()> {
    let program = program(rules);
    explain::step(
        &format!(
            "cgroup v2: load a device filter ({} eBPF instructions: allow {} rules, refuse the rest), checked by the kernel's verifier",
            program.len(),
            rules.len()
        ),
        Some("bpftool prog load crabbox_dev.o /sys/fs/bpf/crabbox_dev type cgroup/dev   # bpf(BPF_PROG_LOAD)"),
    );
    let loaded = load(&program)?;
    explain::step(
        "cgroup v2: attach it to the container's cgroup (the cgroup keeps it; we close our descriptor)",
        Some(&format!(
            "bpftool cgroup attach {dir} device pinned /sys/fs/bpf/crabbox_dev   # bpf(BPF_PROG_ATTACH); see it: bpftool cgroup show {dir}",
            dir = dir.display()
        )),
    );
    attach(dir, &loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_cgroup;

    /// Runs a program as the kernel would, for the few opcodes we emit.
    fn run(program: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> i64 {
        let ctx = [((access << 16) | kind) as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = program[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                BPF_LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = ctx[i.off as usize / 4] as u64;
                }
                BPF_ALU_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                BPF_ALU_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                BPF_ALU_MOV_K => r[dst] = i.imm as u32 as u64,
                BPF_ALU_MOV_X => r[dst] = r[src] as u32 as u64,
                BPF_JMP_JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                BPF_JMP_JNE_X if r[dst] != r[src] => pc += i.off as usize,
                BPF_JMP_JNE_K | BPF_JMP_JNE_X => {}
                BPF_JMP_EXIT => return r[0] as i64,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_default_program_allows_dockers_devices_and_refuses_the_rest() {
        let rules = device_cgroup::default_rules();
        let p = program(&rules);
        // The prologue, then one block per rule, then "refuse".
        assert_eq!(p[0], load_word(R2, R1, 0));
        assert_eq!(p[3], shift_right(R3, 16));
        assert_eq!(&p[p.len() - 2..], &[set(R0, 0), exit()]);
        let (r, w, m) = (ACC_READ, ACC_WRITE, ACC_MKNOD);
        for (name, kind, access, major, minor, allowed) in [
            ("read /dev/null", DEV_CHAR, r, 1, 3, 1),
            ("write /dev/null", DEV_CHAR, w | r, 1, 3, 1),
            ("read /dev/urandom", DEV_CHAR, r, 1, 9, 1),
            ("open /dev/ptmx", DEV_CHAR, r | w, 5, 2, 1),
            ("open /dev/pts/7", DEV_CHAR, r | w, 136, 7, 1),
            ("mknod a loop device", DEV_BLOCK, m, 7, 0, 1),
            ("mknod /dev/mem", DEV_CHAR, m, 1, 1, 1),
            ("read a loop device", DEV_BLOCK, r, 7, 0, 0),
            ("write a disk", DEV_BLOCK, w, 8, 0, 0),
            ("read /dev/mem", DEV_CHAR, r, 1, 1, 0),
            ("read /dev/kmsg", DEV_CHAR, r, 1, 11, 0),
            ("read and mknod /dev/mem", DEV_CHAR, r | m, 1, 1, 0),
            ("char 7:0 is not block 7:0", DEV_CHAR, r, 7, 0, 0),
        ] {
            assert_eq!(run(&p, kind, access, major, minor), allowed, "{name}");
        }
    }

    #[test]
    fn a_device_rule_allows_only_its_letters() {
        let rules = [device_cgroup::Rule {
            kind: Kind::Block,
            major: Some(7),
            minor: Some(3),
            access: "r".into(),
        }];
        let p = program(&rules);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 7, 3), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_WRITE, 7, 3), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 7, 4), 0);
        // rwm needs no access test: a shorter block.
        let full = program(&[device_cgroup::Rule {
            access: "rwm".into(),
            ..rules[0].clone()
        }]);
        assert_eq!(full.len(), p.len() - 3);
        assert_eq!(run(&full, DEV_BLOCK, ACC_WRITE, 7, 3), 1);
    }

    #[test]
    fn the_kernel_accepts_the_default_program_and_explains_a_refusal() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: loading eBPF programs needs root");
            return;
        }
        load(&program(&device_cgroup::default_rules())).expect("the verifier accepts it");
        // r0 is never set: the verifier refuses, and says why.
        let error = load(&[exit()]).unwrap_err();
        assert!(
            error.message().contains("the verifier says"),
            "{}",
            error.message()
        );
        assert!(error.message().contains("R0"), "{}", error.message());
        assert!(!error.message().contains('\n'));
    }

    #[test]
    fn an_instruction_is_eight_bytes_as_the_kernels() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // r1 into r3: source in the high half, destination in the low one.
        assert_eq!(copy(R3, R1).regs, 0x13);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
    }
}
