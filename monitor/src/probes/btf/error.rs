//! What can go wrong reading BTF or looking up a member.

use super::MAX_DEPTH;

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
