//! A small reader of the kernel's BTF, enough to find struct member offsets.
//!
//! The kernel programs walk kernel structures (`task->files->fdt->fd[fd]->f_path`,
//! dentries, mounts) with `bpf_probe_read_kernel`, so they need the byte offset of
//! every member they read. Those offsets change between kernel builds; the running
//! kernel describes its own layout in `/sys/kernel/btf/vmlinux`, and the loader
//! passes the offsets to the programs as `.rodata` globals ([`KernelOffsets`](monitor_common::KernelOffsets)), so
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

mod error;
mod offsets;

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

pub use error::BtfError;
pub use offsets::kernel_offsets;

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

#[cfg(test)]
mod encoder;
#[cfg(test)]
mod tests;
