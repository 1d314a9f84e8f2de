//! A test-only BTF writer: builds blobs type by type, the way the kernel lays
//! them out, so the reader is tested against known layouts without a kernel.

use super::*;

/// Builds BTF blobs type by type, the way the kernel lays them out, so the
/// reader is tested against known layouts without a kernel.
pub(super) struct Encoder {
    pub(super) big_endian: bool,
    pub(super) types: Vec<u8>,
    pub(super) strings: Vec<u8>,
    pub(super) next_id: u32,
}

impl Encoder {
    pub(super) fn new() -> Self {
        Self {
            big_endian: false,
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
        }
    }

    pub(super) fn put(&mut self, v: u32) {
        let b = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.types.extend_from_slice(&b);
    }

    pub(super) fn name(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    /// One `btf_type` header plus `extra` words; returns its id.
    pub(super) fn raw(
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

    pub(super) fn int(&mut self, name: &str, bytes: u32) -> u32 {
        self.raw(name, KIND_INT, false, 0, bytes, &[bytes * 8])
    }

    pub(super) fn ptr(&mut self, to: u32) -> u32 {
        self.raw("", KIND_PTR, false, 0, to, &[])
    }

    pub(super) fn modifier(&mut self, kind: u32, name: &str, to: u32) -> u32 {
        self.raw(name, kind, false, 0, to, &[])
    }

    /// A struct or union; members are (name, type, bit offset or raw kflag word).
    pub(super) fn composite(
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

    pub(super) fn strukt(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        self.composite(KIND_STRUCT, name, size, false, members)
    }

    pub(super) fn union(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        self.composite(KIND_UNION, name, size, false, members)
    }

    /// Adds one record of every kind the reader must skip (names that would
    /// confuse a lookup if misread).
    pub(super) fn every_other_kind(&mut self, int: u32) {
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

    pub(super) fn finish(self) -> Vec<u8> {
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
pub(super) fn dentry_like(e: &mut Encoder) {
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
