//! The canonical tar encoding of a snapshot: GNU format headers laid out byte for
//! byte as GNU tar 1.34 writes them with
//! `--format=gnu --sort=name --mtime=@N --owner=0 --group=0 --numeric-owner
//! --mode=go-rwx,u+rwX,go=u,go-w,a-st --hard-dereference` (see
//! `cookbook/snapshot-format.md`). Written by hand rather than with the `tar`
//! crate's `Builder` because the digest must equal GNU tar's output bit for bit
//! (checksum field layout, `././@LongLink` headers, end-of-archive padding).

/// Size of one tar block.
pub const BLOCK: usize = 512;
/// GNU tar's default record size (blocking factor 20): archives are padded to it.
pub const RECORD: u64 = 20 * BLOCK as u64;
/// Names and link targets longer than this go into a `././@LongLink` entry.
const NAME_FIELD: usize = 100;

/// Entry types of the canonical format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    File,
    Dir,
    Symlink,
}

impl Type {
    fn flag(self) -> u8 {
        match self {
            Type::File => b'0',
            Type::Dir => b'5',
            Type::Symlink => b'2',
        }
    }
}

/// Normalized permission bits: directories and symlinks 0755, files 0755 when the
/// owner-execute bit is set and 0644 otherwise.
pub fn normalized_mode(kind: Type, owner_exec: bool) -> u32 {
    match kind {
        Type::Dir | Type::Symlink => 0o755,
        Type::File if owner_exec => 0o755,
        Type::File => 0o644,
    }
}

/// Appends the header block(s) for one entry to `out`. `name` is the full tar
/// name (`./` prefixed, directories with a trailing `/`).
pub fn append_header(
    out: &mut Vec<u8>,
    name: &[u8],
    kind: Type,
    mode: u32,
    size: u64,
    mtime: u64,
    link: &[u8],
) {
    if name.len() > NAME_FIELD {
        append_long(out, name, b'L');
    }
    if link.len() > NAME_FIELD {
        append_long(out, link, b'K');
    }
    let mut h = [0u8; BLOCK];
    copy_trunc(&mut h[0..100], name);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    numeric(&mut h[124..136], size);
    numeric(&mut h[136..148], mtime);
    h[156] = kind.flag();
    copy_trunc(&mut h[157..257], link);
    h[257..265].copy_from_slice(b"ustar  \0");
    finish(&mut h);
    out.extend_from_slice(&h);
}

/// A `././@LongLink` pseudo-entry carrying a long name (`L`) or link target (`K`).
fn append_long(out: &mut Vec<u8>, value: &[u8], flag: u8) {
    let mut h = [0u8; BLOCK];
    copy_trunc(&mut h[0..100], b"././@LongLink");
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    numeric(&mut h[124..136], value.len() as u64 + 1);
    // GNU tar always writes 0 here, whatever --mtime says.
    numeric(&mut h[136..148], 0);
    h[156] = flag;
    h[257..265].copy_from_slice(b"ustar  \0");
    finish(&mut h);
    out.extend_from_slice(&h);
    out.extend_from_slice(value);
    out.push(0);
    // Padded by the value's own length: `out` is a chunk of the stream that
    // need not start on a block boundary, so its length says nothing.
    out.resize(out.len() + padding_for(value.len() as u64 + 1), 0);
}

/// Zero bytes after a file's content of `size` bytes up to the block boundary.
pub fn padding_for(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 { 0 } else { BLOCK - rem }
}

/// Bytes of the end-of-archive trailer (two zero blocks plus padding to the
/// record size) for an archive of `len` bytes so far.
pub fn trailer_len(len: u64) -> u64 {
    let with_eof = len + 2 * BLOCK as u64;
    with_eof.div_ceil(RECORD) * RECORD - len
}

fn copy_trunc(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Zero-padded octal digits filling the field but its last byte, which is NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    debug_assert_eq!(s.len(), digits, "value {value} does not fit");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

/// Octal when it fits, else GNU's base-256 encoding (sizes of 8 GiB and more).
fn numeric(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if value < 1u64 << (3 * digits) {
        octal(field, value);
    } else {
        field.fill(0);
        field[0] = 0x80;
        let be = value.to_be_bytes();
        let n = field.len();
        field[n - 8..].copy_from_slice(&be);
    }
}

/// Fills the checksum field the way GNU tar does: six octal digits, NUL, space.
fn finish(h: &mut [u8; BLOCK]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}");
    h[148..154].copy_from_slice(s.as_bytes());
    h[154] = 0;
    h[155] = b' ';
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_gnu_tar_layout() {
        let mut out = Vec::new();
        append_header(&mut out, b"./", Type::Dir, 0o755, 0, 0, b"");
        assert_eq!(out.len(), BLOCK);
        assert_eq!(&out[100..108], b"0000755\0");
        assert_eq!(&out[124..136], b"00000000000\0");
        // checksum as GNU tar 1.34 writes it for this header
        assert_eq!(&out[148..156], b"006042\0 ");
        assert_eq!(out[156], b'5');
        assert_eq!(&out[257..265], b"ustar  \0");
    }

    #[test]
    fn long_names_use_longlink() {
        let name = [b'a'; 101];
        let mut out = Vec::new();
        append_header(&mut out, &name, Type::File, 0o644, 1, 0, b"");
        assert_eq!(out.len(), 3 * BLOCK);
        assert_eq!(&out[..13], b"././@LongLink");
        assert_eq!(out[156], b'L');
        assert_eq!(&out[124..136], b"00000000146\0");
        assert_eq!(&out[BLOCK..BLOCK + 101], &name[..]);
        assert_eq!(out[BLOCK + 101], 0);
        let mut exact = Vec::new();
        append_header(&mut exact, &name[..100], Type::File, 0o644, 1, 0, b"");
        assert_eq!(exact.len(), BLOCK);
    }

    #[test]
    fn long_entry_is_padded_by_its_own_length_not_the_buffer_length() {
        // a chunk of the stream that starts mid-block
        let mut out = vec![7u8; 333];
        append_header(&mut out, &[b'a'; 111], Type::File, 0o644, 1, 0, b"");
        assert_eq!(out.len(), 333 + 3 * BLOCK);
        assert_eq!(
            &out[333 + 2 * BLOCK..333 + 2 * BLOCK + 100],
            &[b'a'; 100][..]
        );
    }

    #[test]
    fn trailer_pads_to_record() {
        assert_eq!(trailer_len(512), RECORD - 512);
        assert_eq!(trailer_len(RECORD - 1024), 1024);
        assert_eq!(trailer_len(RECORD - 512), RECORD + 512);
    }

    #[test]
    fn huge_sizes_use_base256() {
        let mut f = [0u8; 12];
        numeric(&mut f, 1 << 40);
        assert_eq!(f[0], 0x80);
        assert_eq!(&f[4..], &(1u64 << 40).to_be_bytes());
    }
}
