//! A small reader of the kernel's BTF, enough to find struct member offsets.
//!
//! The kernel programs walk kernel structures (`task->files->fdt->fd[fd]->f_path`,
//! dentries, mounts) with `bpf_probe_read_kernel`, so they need the byte offset of
//! every member they read. Those offsets change between kernel builds; the running
//! kernel describes its own layout in `/sys/kernel/btf/vmlinux`, and the loader
//! passes the offsets to the programs as `.rodata` globals ([`KernelOffsets`]), so
//! one object file works on every kernel with BTF.
//!
//! Written here rather than taken from a crate: btf-rs is LGPL, and aya-obj keeps
//! struct members private. Only what offsets need is decoded: the type section is
//! walked once to learn where each type starts (every kind must be skipped by its
//! exact size, or everything after it is misread), and structs and unions are
//! indexed by name.
//!
//! The format (`include/uapi/linux/btf.h`): a header (magic `0xeB9F`, version 1,
//! section offsets relative to the end of the header), a type section of
//! variable-sized records (type id 1 is the first record, 0 is `void`), and a
//! string section of NUL-terminated names referenced by byte offset.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use monitor_common::KernelOffsets;

/// Where the running kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
/// Size of `struct btf_header` in version 1; `hdr_len` may be larger (newer fields).
const HEADER_MIN: usize = 24;
/// Size of `struct btf_type`: name_off, info, size/type.
const TYPE_LEN: usize = 12;
/// Anonymous members nest a few levels at most; a cycle would be a corrupt file.
const MAX_DEPTH: u32 = 32;

// Kinds (`BTF_KIND_*`).
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Errors reading BTF or looking up a member.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The kernel exposes no BTF.
    #[error("{path} does not exist: the kernel was built without CONFIG_DEBUG_INFO_BTF; agentwatch needs a kernel with BTF (most distribution kernels since 5.4 have it)")]
    NoKernelBtf {
        /// The path tried.
        path: String,
    },
    /// The BTF file exists but could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The path tried.
        path: String,
        /// What the read returned.
        #[source]
        source: std::io::Error,
    },
    /// The blob does not start with the BTF magic.
    #[error("not BTF: magic is {magic:#06x}, expected 0xeb9f")]
    BadMagic {
        /// The first two bytes, little-endian.
        magic: u16,
    },
    /// A BTF version this reader does not know.
    #[error("unsupported btf version {version} (only version 1 is known)")]
    BadVersion {
        /// The version byte.
        version: u8,
    },
    /// The header or a section lies outside the blob.
    #[error("corrupt btf: {what} at bytes {start}..{end} lies outside the {len}-byte blob")]
    OutOfBounds {
        /// Which part was being read.
        what: &'static str,
        /// First byte of the part.
        start: usize,
        /// One past its last byte.
        end: usize,
        /// Size of the whole blob.
        len: usize,
    },
    /// A type record of a kind this reader cannot size, so nothing after it can be read.
    #[error("unknown btf kind {kind} at type id {id} (byte {offset} of the type section); the kernel is newer than this agentwatch knows")]
    UnknownKind {
        /// The kind number.
        kind: u32,
        /// The type id of the record.
        id: u32,
        /// Its offset in the type section.
        offset: usize,
    },
    /// A name offset outside the string section, or not valid UTF-8.
    #[error("corrupt btf: bad string at offset {offset} of the {len}-byte string section")]
    BadString {
        /// The name offset.
        offset: u32,
        /// Size of the string section.
        len: usize,
    },
    /// A member refers to a type id that does not exist.
    #[error("corrupt btf: type id {id} does not exist ({count} types)")]
    BadTypeId {
        /// The id referred to.
        id: u32,
        /// Number of types in the blob (ids 1..=count).
        count: u32,
    },
    /// Anonymous members or modifiers nested deeper than any real kernel type.
    #[error("corrupt btf: type chain from type id {id} is deeper than {MAX_DEPTH} levels")]
    TooDeep {
        /// The type where the chain started.
        id: u32,
    },
    /// No struct or union of that name.
    #[error("struct {struct_name} not found in the kernel's btf")]
    StructNotFound {
        /// The struct looked for.
        struct_name: String,
    },
    /// The struct exists but has no such member (directly or in an anonymous member).
    #[error("struct {struct_name} has no member {member} in the kernel's btf; this kernel's layout is not supported yet")]
    MemberNotFound {
        /// The struct looked in.
        struct_name: String,
        /// The member looked for.
        member: String,
    },
    /// The member is a bitfield that does not start on a byte.
    #[error("{struct_name}.{member} is a bitfield at bit {bit_offset}, not at a byte offset")]
    Bitfield {
        /// The struct.
        struct_name: String,
        /// The member.
        member: String,
        /// Its offset in bits from the start of the struct.
        bit_offset: u32,
    },
}

/// Parsed BTF: the raw blob plus an index of where each type record starts and
/// which type ids are structs or unions of a given name.
#[derive(Debug)]
pub struct Btf {
    data: Vec<u8>,
    big_endian: bool,
    /// Byte range of the string section in `data`.
    strings: Range<usize>,
    /// Byte offset in `data` of each type record; index 0 stands for `void`
    /// (never read), so `starts[id]` is type `id`.
    starts: Vec<usize>,
    /// Struct and union type ids by name, in type id order (named ones only).
    composites: HashMap<String, Vec<u32>>,
}

/// One member of a struct or union, decoded.
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    /// Bitfield width with `kind_flag` set; 0 means "not a bitfield" (or old-style).
    bitfield_size: u32,
}

impl Btf {
    /// Reads the running kernel's BTF from [`VMLINUX_BTF`].
    pub fn from_sys() -> Result<Btf, BtfError> {
        Self::from_path(Path::new(VMLINUX_BTF))
    }

    /// Reads BTF from a file (a `/sys/kernel/btf/*` file or a saved copy).
    pub fn from_path(path: &Path) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                BtfError::NoKernelBtf {
                    path: path.display().to_string(),
                }
            } else {
                BtfError::Read {
                    path: path.display().to_string(),
                    source,
                }
            }
        })?;
        Self::from_bytes(data)
    }

    /// Parses a raw BTF blob (either byte order).
    pub fn from_bytes(data: Vec<u8>) -> Result<Btf, BtfError> {
        let len = data.len();
        let oob = |what, start: usize, end: usize| BtfError::OutOfBounds {
            what,
            start,
            end,
            len,
        };
        if len < HEADER_MIN {
            return Err(oob("header", 0, HEADER_MIN));
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        let big_endian = match magic {
            MAGIC => false,
            m if m.swap_bytes() == MAGIC => true,
            magic => return Err(BtfError::BadMagic { magic }),
        };
        if data[2] != 1 {
            return Err(BtfError::BadVersion { version: data[2] });
        }
        let mut btf = Btf {
            data,
            big_endian,
            strings: 0..0,
            starts: Vec::new(),
            composites: HashMap::new(),
        };
        let hdr_len = btf.u32_at(4) as usize;
        if hdr_len < HEADER_MIN || hdr_len > len {
            return Err(oob("header", 0, hdr_len));
        }
        let section = |off: usize, size: usize, what| {
            let start = hdr_len.checked_add(off).ok_or(oob(what, off, usize::MAX))?;
            let end = start
                .checked_add(size)
                .ok_or(oob(what, start, usize::MAX))?;
            if end > len {
                return Err(oob(what, start, end));
            }
            Ok(start..end)
        };
        let types = section(
            btf.u32_at(8) as usize,
            btf.u32_at(12) as usize,
            "type section",
        )?;
        btf.strings = section(
            btf.u32_at(16) as usize,
            btf.u32_at(20) as usize,
            "string section",
        )?;
        btf.index_types(types)?;
        Ok(btf)
    }

    /// Walks the type section once, recording where each record starts and
    /// indexing named structs and unions.
    fn index_types(&mut self, types: Range<usize>) -> Result<(), BtfError> {
        // vmlinux has ~150k types; a rough guess avoids most regrowth.
        let mut starts = Vec::with_capacity(types.len() / 24 + 1);
        starts.push(0); // type id 0 is void
        let mut composites: HashMap<String, Vec<u32>> = HashMap::new();
        let mut pos = types.start;
        while pos < types.end {
            let id = starts.len() as u32;
            let section_offset = pos - types.start;
            if pos + TYPE_LEN > types.end {
                return Err(BtfError::OutOfBounds {
                    what: "type record",
                    start: pos,
                    end: pos + TYPE_LEN,
                    len: types.end,
                });
            }
            let info = self.u32_at(pos + 4);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let extra = match kind {
                KIND_INT => 4,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => 12 * vlen,
                KIND_ENUM => 8 * vlen,
                KIND_FUNC_PROTO => 8 * vlen,
                KIND_VAR => 4,
                KIND_DATASEC => 12 * vlen,
                KIND_DECL_TAG => 4,
                KIND_ENUM64 => 12 * vlen,
                _ => {
                    return Err(BtfError::UnknownKind {
                        kind,
                        id,
                        offset: section_offset,
                    })
                }
            };
            let end = pos + TYPE_LEN + extra;
            if end > types.end {
                return Err(BtfError::OutOfBounds {
                    what: "type record",
                    start: pos,
                    end,
                    len: types.end,
                });
            }
            if kind == KIND_STRUCT || kind == KIND_UNION {
                let name = self.str_at(self.u32_at(pos))?;
                if !name.is_empty() {
                    composites.entry(name.to_owned()).or_default().push(id);
                }
            }
            starts.push(pos);
            pos = end;
        }
        self.starts = starts;
        self.composites = composites;
        Ok(())
    }

    /// Number of types (ids `1..=count`).
    pub fn type_count(&self) -> u32 {
        (self.starts.len() - 1) as u32
    }

    /// Byte offset of `member` in the struct or union named `struct_name`.
    ///
    /// Members of anonymous struct and union members are found too, their
    /// offsets summed (on 6.18 `file.f_path` and `dentry.d_name` sit in
    /// anonymous unions). If several structs share the name, the first that has
    /// the member wins.
    pub fn member_offset(&self, struct_name: &str, member: &str) -> Result<u32, BtfError> {
        let ids = self
            .composites
            .get(struct_name)
            .ok_or_else(|| BtfError::StructNotFound {
                struct_name: struct_name.to_owned(),
            })?;
        for &id in ids {
            if let Some(bit_offset) = self.find_member(id, member, 0)? {
                if bit_offset % 8 != 0 {
                    return Err(BtfError::Bitfield {
                        struct_name: struct_name.to_owned(),
                        member: member.to_owned(),
                        bit_offset,
                    });
                }
                return Ok(bit_offset / 8);
            }
        }
        Err(BtfError::MemberNotFound {
            struct_name: struct_name.to_owned(),
            member: member.to_owned(),
        })
    }

    /// Bit offset of `member` in composite type `id`, searching anonymous members.
    fn find_member(&self, id: u32, member: &str, depth: u32) -> Result<Option<u32>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep { id });
        }
        for m in self.members(id)? {
            let name = self.str_at(m.name_off)?;
            if name == member {
                return Ok(Some(m.bit_offset + self.old_style_bit_offset(&m)?));
            }
            if name.is_empty() {
                let inner = self.skip_modifiers(m.type_id)?;
                let kind = self.kind(inner)?;
                if kind == KIND_STRUCT || kind == KIND_UNION {
                    if let Some(off) = self.find_member(inner, member, depth + 1)? {
                        return Ok(Some(m.bit_offset + off));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Without `kind_flag`, a bitfield is encoded as an INT whose own
    /// `BTF_INT_OFFSET` adds to the member's bit offset (old compilers).
    fn old_style_bit_offset(&self, m: &Member) -> Result<u32, BtfError> {
        if m.bitfield_size != 0 {
            return Ok(0);
        }
        let t = self.skip_modifiers(m.type_id)?;
        if t != 0 && self.kind(t)? == KIND_INT {
            let encoding = self.u32_at(self.starts[t as usize] + TYPE_LEN);
            return Ok((encoding >> 16) & 0xff);
        }
        Ok(0)
    }

    /// The members of struct/union `id`.
    fn members(&self, id: u32) -> Result<impl Iterator<Item = Member> + '_, BtfError> {
        let start = self.start(id)?;
        let info = self.u32_at(start + 4);
        let kind_flag = info >> 31 == 1;
        let vlen = (info & 0xffff) as usize;
        Ok((0..vlen).map(move |i| {
            let at = start + TYPE_LEN + 12 * i;
            let raw = self.u32_at(at + 8);
            let (bit_offset, bitfield_size) = if kind_flag {
                (raw & 0x00ff_ffff, raw >> 24)
            } else {
                (raw, 0)
            };
            Member {
                name_off: self.u32_at(at),
                type_id: self.u32_at(at + 4),
                bit_offset,
                bitfield_size,
            }
        }))
    }

    /// Follows typedef, const, volatile, restrict and type tags to the real type.
    fn skip_modifiers(&self, mut id: u32) -> Result<u32, BtfError> {
        let first = id;
        for _ in 0..MAX_DEPTH {
            if id == 0 {
                return Ok(0);
            }
            match self.kind(id)? {
                KIND_TYPEDEF | KIND_CONST | KIND_VOLATILE | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = self.u32_at(self.start(id)? + 8);
                }
                _ => return Ok(id),
            }
        }
        Err(BtfError::TooDeep { id: first })
    }

    fn start(&self, id: u32) -> Result<usize, BtfError> {
        match self.starts.get(id as usize) {
            Some(&s) if id != 0 => Ok(s),
            _ => Err(BtfError::BadTypeId {
                id,
                count: self.type_count(),
            }),
        }
    }

    fn kind(&self, id: u32) -> Result<u32, BtfError> {
        Ok((self.u32_at(self.start(id)? + 4) >> 24) & 0x1f)
    }

    /// Reads a u32 in the blob's byte order. Callers check bounds first (the
    /// header length and every type record were checked when indexing).
    fn u32_at(&self, at: usize) -> u32 {
        let b = [
            self.data[at],
            self.data[at + 1],
            self.data[at + 2],
            self.data[at + 3],
        ];
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn str_at(&self, offset: u32) -> Result<&str, BtfError> {
        let bad = || BtfError::BadString {
            offset,
            len: self.strings.len(),
        };
        let strings = &self.data[self.strings.clone()];
        let rest = strings.get(offset as usize..).ok_or_else(bad)?;
        let end = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
        std::str::from_utf8(&rest[..end]).map_err(|_| bad())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF blobs type by type, the way the kernel lays them out, so the
    /// reader is tested against known layouts without a kernel.
    struct Encoder {
        big_endian: bool,
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Encoder {
        fn new() -> Self {
            Self {
                big_endian: false,
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }

        fn put(&mut self, v: u32) {
            let b = if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.types.extend_from_slice(&b);
        }

        fn name(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        /// One `btf_type` header plus `extra` words; returns its id.
        fn raw(
            &mut self,
            name: &str,
            kind: u32,
            kflag: bool,
            vlen: u32,
            size_or_type: u32,
            extra: &[u32],
        ) -> u32 {
            let n = self.name(name);
            self.put(n);
            self.put((kflag as u32) << 31 | kind << 24 | vlen);
            self.put(size_or_type);
            for &w in extra {
                self.put(w);
            }
            self.next_id += 1;
            self.next_id - 1
        }

        fn int(&mut self, name: &str, bytes: u32) -> u32 {
            self.raw(name, KIND_INT, false, 0, bytes, &[bytes * 8])
        }

        fn ptr(&mut self, to: u32) -> u32 {
            self.raw("", KIND_PTR, false, 0, to, &[])
        }

        fn modifier(&mut self, kind: u32, name: &str, to: u32) -> u32 {
            self.raw(name, kind, false, 0, to, &[])
        }

        /// A struct or union; members are (name, type, bit offset or raw kflag word).
        fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            kflag: bool,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let mut extra = Vec::new();
            for &(n, t, off) in members {
                extra.push(self.name(n));
                extra.push(t);
                extra.push(off);
            }
            self.raw(name, kind, kflag, members.len() as u32, size, &extra)
        }

        fn strukt(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            self.composite(KIND_STRUCT, name, size, false, members)
        }

        fn union(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            self.composite(KIND_UNION, name, size, false, members)
        }

        /// Adds one record of every kind the reader must skip (names that would
        /// confuse a lookup if misread).
        fn every_other_kind(&mut self, int: u32) {
            let arr = self.raw("", KIND_ARRAY, false, 0, 0, &[int, int, 16]);
            let e1 = self.name("A");
            let e2 = self.name("B");
            self.raw("colour", KIND_ENUM, false, 2, 4, &[e1, 0, e2, 1]);
            self.raw("later", KIND_FWD, false, 0, 0, &[]);
            self.modifier(KIND_RESTRICT, "", arr);
            let p1 = self.name("x");
            let p2 = self.name("y");
            let proto = self.raw("", KIND_FUNC_PROTO, false, 2, int, &[p1, int, p2, int]);
            self.raw("do_thing", KIND_FUNC, false, 0, proto, &[]);
            let var = self.raw("some_var", KIND_VAR, false, 0, int, &[1]);
            self.raw(".data", KIND_DATASEC, false, 1, 4, &[var, 0, 4]);
            self.raw("double", KIND_FLOAT, false, 0, 8, &[]);
            self.raw("tag", KIND_DECL_TAG, false, 0, var, &[0xffff_ffff]);
            self.modifier(KIND_TYPE_TAG, "user", int);
            let v = self.name("BIG");
            self.raw("big", KIND_ENUM64, false, 1, 8, &[v, 1, 2]);
            self.modifier(KIND_TYPEDEF, "int_t", int);
            self.modifier(KIND_VOLATILE, "", int);
            self.modifier(KIND_CONST, "", int);
            self.ptr(int);
            self.union("either", 4, &[("one", int, 0), ("two", int, 0)]);
        }

        fn finish(self) -> Vec<u8> {
            let mut out = Vec::new();
            let w16 = |out: &mut Vec<u8>, v: u16| {
                out.extend_from_slice(&if self.big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                })
            };
            w16(&mut out, MAGIC);
            out.push(1); // version
            out.push(0); // flags
            let w32 = |out: &mut Vec<u8>, v: u32| {
                out.extend_from_slice(&if self.big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                })
            };
            let tl = self.types.len() as u32;
            w32(&mut out, HEADER_MIN as u32);
            w32(&mut out, 0);
            w32(&mut out, tl);
            w32(&mut out, tl);
            w32(&mut out, self.strings.len() as u32);
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// The 6.18 shape of `struct qstr` and `struct dentry`: `len` in an
    /// anonymous struct in an anonymous union, `d_name` in an anonymous union.
    fn dentry_like(e: &mut Encoder) {
        let u32_t = e.int("unsigned int", 4);
        let u64_t = e.int("long long unsigned int", 8);
        let uchar = e.int("unsigned char", 1);
        let cuchar = e.modifier(KIND_CONST, "", uchar);
        let name_ptr = e.ptr(cuchar);
        let hl = e.strukt("", 8, &[("hash", u32_t, 0), ("len", u32_t, 32)]);
        let un = e.union("", 8, &[("", hl, 0), ("hash_len", u64_t, 0)]);
        let qstr = e.strukt("qstr", 16, &[("", un, 0), ("name", name_ptr, 64)]);
        let dentry_fwd = e.raw("dentry", KIND_FWD, false, 0, 0, &[]);
        let dptr = e.ptr(dentry_fwd);
        let names = e.union("", 16, &[("d_name", qstr, 0), ("__d_name", qstr, 0)]);
        e.strukt(
            "dentry",
            64,
            &[
                ("d_flags", u32_t, 0),
                ("d_parent", dptr, 64),
                ("", names, 128),
            ],
        );
    }

    #[test]
    fn finds_members_inside_anonymous_unions_and_structs() {
        let mut e = Encoder::new();
        dentry_like(&mut e);
        let btf = Btf::from_bytes(e.finish()).unwrap();
        assert_eq!(btf.member_offset("qstr", "hash").unwrap(), 0);
        assert_eq!(btf.member_offset("qstr", "len").unwrap(), 4);
        assert_eq!(btf.member_offset("qstr", "hash_len").unwrap(), 0);
        assert_eq!(btf.member_offset("qstr", "name").unwrap(), 8);
        assert_eq!(btf.member_offset("dentry", "d_parent").unwrap(), 8);
        assert_eq!(btf.member_offset("dentry", "d_name").unwrap(), 16);
    }

    #[test]
    fn big_endian_blob_reads_the_same() {
        let mut e = Encoder::new();
        e.big_endian = true;
        dentry_like(&mut e);
        let btf = Btf::from_bytes(e.finish()).unwrap();
        assert_eq!(btf.member_offset("qstr", "len").unwrap(), 4);
        assert_eq!(btf.member_offset("dentry", "d_name").unwrap(), 16);
    }

    #[test]
    fn anonymous_members_reached_through_typedef_const_volatile() {
        let mut e = Encoder::new();
        let int = e.int("int", 4);
        let inner = e.strukt("", 8, &[("deep", int, 32)]);
        let td = e.modifier(KIND_TYPEDEF, "inner_t", inner);
        let c = e.modifier(KIND_CONST, "", td);
        let v = e.modifier(KIND_VOLATILE, "", c);
        let td2 = e.modifier(KIND_TYPEDEF, "inner2_t", v);
        e.strukt("outer", 24, &[("a", int, 0), ("", td2, 128)]);
        let btf = Btf::from_bytes(e.finish()).unwrap();
        assert_eq!(btf.member_offset("outer", "deep").unwrap(), 16 + 4);
        // A named struct member is not searched: `deep` is only reachable
        // through anonymous members.
        let mut e = Encoder::new();
        let int = e.int("int", 4);
        let inner = e.strukt("inner", 8, &[("deep", int, 32)]);
        e.strukt("outer", 24, &[("named", inner, 0)]);
        let btf = Btf::from_bytes(e.finish()).unwrap();
        assert!(matches!(
            btf.member_offset("outer", "deep"),
            Err(BtfError::MemberNotFound { .. })
        ));
    }

    #[test]
    fn kind_flag_bitfields() {
        let mut e = Encoder::new();
        let u32_t = e.int("unsigned int", 4);
        let u8_t = e.int("unsigned char", 1);
        // kind_flag: low 24 bits are the bit offset, high 8 bits the width.
        e.composite(
            KIND_STRUCT,
            "flags",
            8,
            true,
            &[
                ("lo", u32_t, 3 << 24),      // bits 0..3
                ("mid", u32_t, 5 << 24 | 3), // bits 3..8
                ("byte", u8_t, 8 << 24 | 8), // a bitfield on a byte
                ("plain", u32_t, 32),        // not a bitfield
            ],
        );
        let btf = Btf::from_bytes(e.finish()).unwrap();
        assert_eq!(btf.member_offset("flags", "lo").unwrap(), 0);
        assert_eq!(btf.member_offset("flags", "byte").unwrap(), 1);
        assert_eq!(btf.member_offset("flags", "plain").unwrap(), 4);
        match btf.member_offset("flags", "mid") {
            Err(BtfError::Bitfield {
                bit_offset: 3,
                ref struct_name,
                ref member,
            }) => assert_eq!((struct_name.as_str(), member.as_str()), ("flags", "mid")),
            other => panic!("expected a bitfield error, got {other:?}"),
        }
    }

    #[test]
    fn old_style_int_bitfield_offset_is_added() {
        let mut e = Encoder::new();
        // INT encoding word: offset in bits 16..24, width in bits 0..8.
        let bf = e.raw("unsigned int", KIND_INT, false, 0, 4, &[4 << 16 | 4]);
        e.strukt("s", 4, &[("x", bf, 0)]);
        let btf = Btf::from_bytes(e.finish()).unwrap();
        assert!(matches!(
            btf.member_offset("s", "x"),
            Err(BtfError::Bitfield { bit_offset: 4, .. })
        ));
    }

    #[test]
    fn skips_every_kind_by_its_size() {
        let mut e = Encoder::new();
        let int = e.int("int", 4);
        e.every_other_kind(int);
        let p = e.ptr(int);
        e.strukt("after", 16, &[("a", int, 0), ("p", p, 64)]);
        e.every_other_kind(int);
        let last = e.strukt("last", 4, &[("z", int, 0)]);
        let btf = Btf::from_bytes(e.finish()).unwrap();
        assert_eq!(btf.member_offset("after", "p").unwrap(), 8);
        assert_eq!(btf.member_offset("last", "z").unwrap(), 0);
        assert_eq!(btf.type_count(), last);
        assert_eq!(btf.member_offset("either", "two").unwrap(), 0);
    }

    #[test]
    fn first_struct_with_the_member_wins() {
        let mut e = Encoder::new();
        let int = e.int("int", 4);
        e.strukt("dup", 4, &[("a", int, 0)]);
        e.strukt("dup", 8, &[("x", int, 0), ("b", int, 32)]);
        e.strukt("dup", 8, &[("b", int, 0)]);
        let btf = Btf::from_bytes(e.finish()).unwrap();
        assert_eq!(btf.member_offset("dup", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("dup", "b").unwrap(), 4);
    }

    #[test]
    fn missing_struct_and_member_are_named() {
        let mut e = Encoder::new();
        dentry_like(&mut e);
        let btf = Btf::from_bytes(e.finish()).unwrap();
        let err = btf.member_offset("nope", "x").unwrap_err();
        assert_eq!(err.to_string(), "struct nope not found in the kernel's btf");
        let err = btf.member_offset("dentry", "d_nope").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("struct dentry has no member d_nope"));
        // A forward declaration is not a struct.
        let mut e = Encoder::new();
        e.raw("only_fwd", KIND_FWD, false, 0, 0, &[]);
        let btf = Btf::from_bytes(e.finish()).unwrap();
        assert!(matches!(
            btf.member_offset("only_fwd", "x"),
            Err(BtfError::StructNotFound { .. })
        ));
    }

    #[test]
    fn kernel_offsets_names_the_missing_member() {
        let mut e = Encoder::new();
        dentry_like(&mut e);
        let btf = Btf::from_bytes(e.finish()).unwrap();
        let err = kernel_offsets(&btf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "struct task_struct not found in the kernel's btf"
        );
    }

    #[test]
    fn corrupt_blobs_are_errors_not_panics() {
        let mut e = Encoder::new();
        dentry_like(&mut e);
        let good = e.finish();
        assert!(matches!(
            Btf::from_bytes(vec![0; 4]),
            Err(BtfError::OutOfBounds { what: "header", .. })
        ));
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(matches!(
            Btf::from_bytes(bad),
            Err(BtfError::BadMagic { .. })
        ));
        let mut bad = good.clone();
        bad[2] = 2;
        assert!(matches!(
            Btf::from_bytes(bad),
            Err(BtfError::BadVersion { version: 2 })
        ));
        // Cut in the middle of the types: the string section now overruns.
        let cut = good[..good.len() - 40].to_vec();
        assert!(matches!(
            Btf::from_bytes(cut),
            Err(BtfError::OutOfBounds { .. })
        ));
        // Every truncation must fail cleanly.
        for n in 0..good.len() {
            assert!(Btf::from_bytes(good[..n].to_vec()).is_err(), "cut at {n}");
        }
        // An unknown kind stops the walk with its id.
        let mut e = Encoder::new();
        e.int("int", 4);
        e.raw("future", 31, false, 0, 0, &[]);
        assert!(matches!(
            Btf::from_bytes(e.finish()),
            Err(BtfError::UnknownKind {
                kind: 31,
                id: 2,
                offset: 16
            })
        ));
        // A member pointing at a type that does not exist.
        let mut e = Encoder::new();
        e.strukt("s", 4, &[("", 99, 0), ("x", 99, 0)]);
        let btf = Btf::from_bytes(e.finish()).unwrap();
        assert!(matches!(
            btf.member_offset("s", "x"),
            Err(BtfError::BadTypeId { id: 99, count: 1 })
        ));
        // A typedef cycle.
        let mut e = Encoder::new();
        e.modifier(KIND_TYPEDEF, "a", 2);
        e.modifier(KIND_TYPEDEF, "b", 1);
        e.strukt("s", 4, &[("", 1, 0)]);
        let btf = Btf::from_bytes(e.finish()).unwrap();
        assert!(matches!(
            btf.member_offset("s", "x"),
            Err(BtfError::TooDeep { .. })
        ));
    }

    #[test]
    fn missing_file_says_the_kernel_lacks_btf() {
        let err = Btf::from_path(Path::new("/nonexistent/btf/vmlinux")).unwrap_err();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    /// The running kernel's BTF: every offset is found and the well-known
    /// ones have their well-known values.
    #[test]
    fn real_vmlinux_btf() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: {VMLINUX_BTF} is absent (kernel without CONFIG_DEBUG_INFO_BTF)");
            return;
        }
        let t = std::time::Instant::now();
        let btf = Btf::from_sys().unwrap_or_else(|e| panic!("parsing {VMLINUX_BTF}: {e}"));
        let parsed = t.elapsed();
        let off = kernel_offsets(&btf).unwrap_or_else(|e| panic!("kernel_offsets: {e}"));
        eprintln!(
            "{} types parsed in {parsed:?}, offsets in {:?}: {off:?}",
            btf.type_count(),
            t.elapsed() - parsed
        );
        assert_eq!(off.path_mnt, 0);
        assert_eq!(off.path_dentry, 8);
        #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
        {
            assert_eq!(off.qstr_len, 4);
            assert_eq!(off.qstr_name, 8);
        }
        assert_eq!(off.mount_mnt % 8, 0);
        // Struct sizes bound the offsets: no member of these is past a few KiB.
        for (name, v) in [
            ("task_real_parent", off.task_real_parent),
            ("task_files", off.task_files),
            ("task_cred", off.task_cred),
            ("file_path", off.file_path),
            ("dentry_name", off.dentry_name),
            ("inode_nlink", off.inode_nlink),
        ] {
            assert!(v > 0 && v < 16384, "{name} = {v}");
        }
        assert_ne!(off.task_pid, off.task_tgid);
        assert_eq!(off.fs_root % 8, 0);
    }
}
