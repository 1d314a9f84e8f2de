//! The BTF reader against blobs built by [`super::encoder`], and against the
//! running kernel's own BTF when there is one.

use super::encoder::*;
use super::*;

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
