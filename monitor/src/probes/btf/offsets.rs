//! The member offsets the kernel programs need ([`KernelOffsets`]), looked up
//! in the running kernel's BTF.

use monitor_common::KernelOffsets;

use super::{Btf, BtfError};

/// Every offset the kernel programs need, from the given BTF.
///
/// The error names the struct and member missing, so an unsupported kernel
/// layout is reported at start-up rather than as garbage events.
pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    let o = |s: &str, m: &str| btf.member_offset(s, m);
    Ok(KernelOffsets {
        task_real_parent: o("task_struct", "real_parent")?,
        task_tgid: o("task_struct", "tgid")?,
        task_pid: o("task_struct", "pid")?,
        task_files: o("task_struct", "files")?,
        task_fs: o("task_struct", "fs")?,
        task_mm: o("task_struct", "mm")?,
        task_exit_code: o("task_struct", "exit_code")?,
        task_cred: o("task_struct", "cred")?,
        cred_uid: o("cred", "uid")?,
        cred_gid: o("cred", "gid")?,
        files_fdt: o("files_struct", "fdt")?,
        fdt_max_fds: o("fdtable", "max_fds")?,
        fdt_fd: o("fdtable", "fd")?,
        file_path: o("file", "f_path")?,
        file_inode: o("file", "f_inode")?,
        file_private_data: o("file", "private_data")?,
        path_mnt: o("path", "mnt")?,
        path_dentry: o("path", "dentry")?,
        inode_ino: o("inode", "i_ino")?,
        inode_sb: o("inode", "i_sb")?,
        // `i_nlink` is const and shares an anonymous union with the writable
        // `__i_nlink`; both sit at the same offset, so either name will do.
        inode_nlink: match o("inode", "i_nlink") {
            Err(BtfError::MemberNotFound { .. }) => o("inode", "__i_nlink")?,
            other => other?,
        },
        sb_dev: o("super_block", "s_dev")?,
        dentry_parent: o("dentry", "d_parent")?,
        dentry_name: o("dentry", "d_name")?,
        qstr_len: o("qstr", "len")?,
        qstr_name: o("qstr", "name")?,
        mount_mnt: o("mount", "mnt")?,
        mount_parent: o("mount", "mnt_parent")?,
        mount_mountpoint: o("mount", "mnt_mountpoint")?,
        vfsmount_root: o("vfsmount", "mnt_root")?,
        fs_root: o("fs_struct", "root")?,
        mm_exe_file: o("mm_struct", "exe_file")?,
        socket_type: o("socket", "type")?,
        socket_sk: o("socket", "sk")?,
        sock_protocol: o("sock", "sk_protocol")?,
        _pad: 0,
    })
}
