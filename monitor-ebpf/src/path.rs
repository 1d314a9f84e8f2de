//! Resolving an open file to its absolute path from the kernel's own
//! structures, the way `d_path` does: walk `dentry->d_parent` up to the
//! task's root, crossing mount points through `struct mount`.
//!
//! Reading the path the process passed would give relative paths, `..` and
//! symlinks unresolved, and re-resolving it later from user space races with
//! the filesystem and fd reuse. After the open, `fd -> file -> f_path` is what
//! the kernel actually opened.
//!
//! Components are written right to left into the per-CPU scratch path area,
//! ending at `PATH_END`, so the result is one contiguous slice. The walk is a
//! `bpf_loop` callback: the verifier checks one step instead of every unrolled
//! iteration, and every offset is masked so it can prove the bounds.

use core::ffi::c_void;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_kernel};
use monitor_common::{PATH_TRUNCATED, PATH_UNLINKED, PATH_UNRESOLVED};

use crate::common::{kptr, kread, off, scratch, Scratch, WalkState, PATH_END};

/// Most path components walked (mount crossings included).
const MAX_STEPS: u32 = 160;
/// Mask keeping a write position inside the first half of the path area.
const POS_MASK: u64 = (PATH_END as u64) - 1;

/// The result of resolving a file.
pub struct Resolved {
    /// The path is `scratch.path[pos..PATH_END]`.
    pub pos: u64,
    /// `PATH_*` flags.
    pub flags: u32,
    /// Device, kernel encoding.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl Resolved {
    fn unresolved() -> Self {
        Resolved {
            pos: PATH_END as u64,
            flags: PATH_UNRESOLVED,
            dev: 0,
            ino: 0,
        }
    }

    /// Length of the path in bytes.
    pub fn len(&self) -> u64 {
        (PATH_END as u64).saturating_sub(self.pos)
    }
}

/// `task->files->fdt->fd[fd]`, checked against `max_fds`.
#[inline(always)]
pub fn fd_file(task: u64, fd: u64) -> Result<u64, i32> {
    let files = kptr(task, off(|o| &o.task_files))?;
    let fdt = kptr(files, off(|o| &o.files_fdt))?;
    let (max_off, fd_off) = (off(|o| &o.fdt_max_fds), off(|o| &o.fdt_fd));
    // `struct fdtable` starts { unsigned int max_fds; struct file **fd; }:
    // then one read gives both (offsets are load-time constants, so the
    // verifier keeps only the branch taken).
    let (max, arr) = if max_off == 0 && fd_off == 8 {
        let b = kread::<[u64; 2]>(fdt, 0)?;
        (b[0] & 0xffff_ffff, b[1])
    } else {
        (kread::<u32>(fdt, max_off)? as u64, kptr(fdt, fd_off)?)
    };
    if fd >= max {
        return Err(-9);
    }
    let file = kptr(arr, fd * 8)?;
    if file == 0 {
        return Err(-9);
    }
    Ok(file)
}

/// Resolves `file` (a `struct file *`) for `task`.
#[inline(always)]
pub fn resolve_file(task: u64, file: u64) -> Resolved {
    try_resolve_file(task, file).unwrap_or_else(|_| Resolved::unresolved())
}

#[inline(always)]
fn try_resolve_file(task: u64, file: u64) -> Result<Resolved, i32> {
    let f_path = off(|o| &o.file_path);
    let p_mnt = off(|o| &o.path_mnt);
    let p_dentry = off(|o| &o.path_dentry);
    let mount_mnt = off(|o| &o.mount_mnt);

    let inode = kptr(file, off(|o| &o.file_inode))?;
    let ino = kread::<u64>(inode, off(|o| &o.inode_ino))?;
    let sb = kptr(inode, off(|o| &o.inode_sb))?;
    let dev = kread::<u32>(sb, off(|o| &o.sb_dev))? as u64;
    let nlink = kread::<u32>(inode, off(|o| &o.inode_nlink)).unwrap_or(1);

    let fs = kptr(task, off(|o| &o.task_fs))?;
    let fs_root = off(|o| &o.fs_root);
    // `struct path` is { vfsmount *mnt; dentry *dentry; }: one read each.
    let ((vfsmnt, dentry), (root_vfsmnt, root_dentry)) = if p_mnt == 0 && p_dentry == 8 {
        let f = kread::<[u64; 2]>(file, f_path)?;
        let r = kread::<[u64; 2]>(fs, fs_root)?;
        ((f[0], f[1]), (r[0], r[1]))
    } else {
        (
            (kptr(file, f_path + p_mnt)?, kptr(file, f_path + p_dentry)?),
            (kptr(fs, fs_root + p_mnt)?, kptr(fs, fs_root + p_dentry)?),
        )
    };

    let sc = scratch().ok_or(-12)?;
    // SAFETY: sc is this CPU's scratch value. The walk state is written and
    // read with volatile accesses: the loop callback changes it behind the
    // compiler's back.
    unsafe {
        let w = addr_of_mut!((*sc).walk);
        write_volatile(addr_of_mut!((*w).dentry), dentry);
        write_volatile(addr_of_mut!((*w).mnt), vfsmnt.wrapping_sub(mount_mnt));
        write_volatile(
            addr_of_mut!((*w).mnt_root),
            kptr(vfsmnt, off(|o| &o.vfsmount_root))?,
        );
        write_volatile(addr_of_mut!((*w).root_dentry), root_dentry);
        write_volatile(
            addr_of_mut!((*w).root_mnt),
            root_vfsmnt.wrapping_sub(mount_mnt),
        );
        write_volatile(addr_of_mut!((*w).pos), PATH_END as u64);
        write_volatile(addr_of_mut!((*w).flags), 0);
        write_volatile(addr_of_mut!((*w).done), 0);
        bpf_loop(
            MAX_STEPS,
            walk_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    let (mut flags, done, pos) = unsafe {
        let w = addr_of!((*sc).walk);
        (
            read_volatile(addr_of!((*w).flags)),
            read_volatile(addr_of!((*w).done)),
            read_volatile(addr_of!((*w).pos)),
        )
    };
    if done == 0 {
        flags |= PATH_TRUNCATED;
    }
    let mut pos = pos & (POS_MASK | PATH_END as u64);
    if pos >= PATH_END as u64 {
        // Nothing was prepended: the file is the root itself.
        pos = PATH_END as u64 - 1;
        // SAFETY: in bounds of the scratch path area.
        unsafe { (*sc).path[(pos & POS_MASK) as usize] = b'/' };
    }
    if nlink == 0 {
        flags |= PATH_UNLINKED;
    }
    Ok(Resolved {
        pos,
        flags,
        dev,
        ino,
    })
}

/// One step of the walk, a `bpf_loop` callback. Returns 1 to stop the loop,
/// 0 to go on.
#[inline(never)]
extern "C" fn walk_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(sc) = scratch() else { return 1 };
    // SAFETY: sc is this CPU's scratch value.
    let w = unsafe { addr_of_mut!((*sc).walk) };
    match unsafe { step(sc, w) } {
        Ok(0) => 0,
        Ok(_) => {
            unsafe { write_volatile(addr_of_mut!((*w).done), 1) };
            1
        }
        Err(_) => {
            unsafe {
                let f = read_volatile(addr_of!((*w).flags));
                write_volatile(addr_of_mut!((*w).flags), f | PATH_UNRESOLVED);
                write_volatile(addr_of_mut!((*w).done), 1);
            }
            1
        }
    }
}

/// # Safety
/// `sc` and `w` point into this CPU's scratch value.
#[inline(always)]
unsafe fn step(sc: *mut Scratch, w: *mut WalkState) -> Result<u32, i32> {
    macro_rules! get {
        ($f:ident) => {{
            // SAFETY: w points into this CPU's scratch value.
            let v = unsafe { read_volatile(addr_of!((*w).$f)) };
            v
        }};
    }
    macro_rules! set {
        ($f:ident, $v:expr) => {{
            let v = $v;
            // SAFETY: as above.
            unsafe { write_volatile(addr_of_mut!((*w).$f), v) }
        }};
    }
    let dentry = get!(dentry);
    let mnt = get!(mnt);
    if dentry == get!(root_dentry) && mnt == get!(root_mnt) {
        return Ok(1);
    }
    if dentry == get!(mnt_root) {
        // At the root of this mount: continue from the mount point in the parent.
        let parent = kptr(mnt, off(|o| &o.mount_parent))?;
        if parent == mnt || parent == 0 {
            return Ok(1);
        }
        set!(dentry, kptr(mnt, off(|o| &o.mount_mountpoint))?);
        set!(mnt, parent);
        set!(
            mnt_root,
            kptr(parent, off(|o| &o.mount_mnt) + off(|o| &o.vfsmount_root))?
        );
        return Ok(0);
    }
    let d_parent = off(|o| &o.dentry_parent);
    let d_name = off(|o| &o.dentry_name);
    let q_len = off(|o| &o.qstr_len);
    let q_name = off(|o| &o.qstr_name);
    // On current kernels `d_name` (a qstr: hash u32, len u32, name pointer)
    // directly follows `d_parent`: then one 24-byte read replaces three
    // (each bpf_probe_read_kernel costs 40-55 ns here). The offsets are
    // load-time constants, so the verifier drops the branch not taken.
    let (parent, len, name) = if d_name == d_parent + 8 && q_len == 4 && q_name == 8 {
        let b = kread::<[u64; 3]>(dentry, d_parent)?;
        (b[0], b[1] >> 32, b[2])
    } else {
        let parent = kptr(dentry, d_parent)?;
        let len = kread::<u32>(dentry, d_name + q_len)? as u64;
        (parent, len, kptr(dentry, d_name + q_name)?)
    };
    if parent == dentry || parent == 0 {
        return Ok(1);
    }
    let len = if len > 255 { 255 } else { len };
    let pos = get!(pos);
    if pos < len + 1 || pos > PATH_END as u64 {
        set!(flags, get!(flags) | PATH_TRUNCATED);
        return Ok(1);
    }
    let start = (pos - len) & POS_MASK;
    // SAFETY: start <= 4095 and len <= 255 stay inside the 8 KiB path area.
    unsafe {
        let dst = (*sc).path.as_mut_ptr().add(start as usize);
        if bpf_probe_read_kernel(
            dst as *mut c_void,
            (len & 255) as u32,
            name as *const c_void,
        ) != 0
        {
            return Err(-14);
        }
        let slash = (pos - len - 1) & POS_MASK;
        (*sc).path[slash as usize] = b'/';
    }
    set!(pos, pos - len - 1);
    set!(dentry, parent);
    Ok(0)
}
