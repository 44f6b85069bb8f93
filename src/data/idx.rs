//! The IDX format of MNIST-style files, gzip'd or raw: a big-endian magic number
//! (`0x00 0x00 type ndims`), `ndims` big-endian u32 sizes, then the values. Only unsigned
//! bytes (type 0x08) occur in these datasets.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

const UNSIGNED_BYTE: u8 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A validated IDX array of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file of `ndims` dimensions, decompressing it first if it is gzip'd. A gzip'd
/// file is read no further than its header announces (plus one byte, to refuse trailing
/// data), so a small file that inflates to gigabytes costs no more memory than its header says.
pub fn read_idx(path: &Path, ndims: usize) -> Result<IdxArray> {
    read_idx_within(path, ndims, u64::MAX)
}

/// `read_idx`, refusing before reading its body a file that announces more than `limit` bytes
/// of values (raw: a file larger than that).
pub fn read_idx_within(path: &Path, ndims: usize, limit: u64) -> Result<IdxArray> {
    let bad = |detail: String| Error::Format {
        path: path.to_path_buf(),
        detail,
    };
    let io = |error| Error::Io {
        path: path.to_path_buf(),
        error,
    };
    if path.is_dir() {
        return Err(bad("is a directory, not an IDX file".into()));
    }
    let size = std::fs::metadata(path).map_err(io)?.len();
    let raw = std::fs::read(path).map_err(io)?;
    let bytes = if raw.starts_with(&GZIP_MAGIC) {
        // Every member of a multi-member gzip (what `cat a.gz b.gz` makes); anything after
        // the last one is not gzip and is refused.
        let mut decoder = flate2::read::MultiGzDecoder::new(&raw[..]);
        let mut header = vec![0u8; 4 + 4 * ndims];
        let read = read_up_to(&mut decoder, &mut header)
            .map_err(|e| bad(format!("corrupt gzip data: {e}")))?;
        header.truncate(read);
        let announced = body_len(&header, ndims).unwrap_or(0);
        check_limit(announced as u64, limit, &header, ndims).map_err(bad)?;
        // Read after the header, into one buffer: the values are never held twice. Reserved
        // no further than the file can inflate to (deflate expands at most 1032:1), so a
        // header that lies costs nothing.
        let most = raw.len().saturating_mul(1032).saturating_add(1024);
        let mut bytes = header;
        bytes.reserve_exact(announced.saturating_add(1).min(most));
        decoder
            .take(announced as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("corrupt gzip data: {e}")))?;
        bytes
    } else {
        let header = &raw[..raw.len().min(4 + 4 * ndims)];
        check_limit(
            size.saturating_sub(header.len() as u64),
            limit,
            header,
            ndims,
        )
        .map_err(bad)?;
        raw
    };
    into_idx(bytes, ndims).map_err(bad)
}

/// Refuses `values` bytes past `limit`, naming the dimensions that announce them.
fn check_limit(
    values: u64,
    limit: u64,
    header: &[u8],
    ndims: usize,
) -> std::result::Result<(), String> {
    if values <= limit {
        return Ok(());
    }
    let what = match header.len() >= 4 + 4 * ndims {
        true => format!("dimensions {:?} announce", dims(header, ndims)),
        false => "the file holds".to_string(),
    };
    Err(format!(
        "{what} {} of values, more than the memory limit leaves for them ({}; --max-memory)",
        size(values),
        size(limit)
    ))
}

/// `bytes` in the largest unit up to GiB that keeps a digit before the point.
pub fn size(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} bytes"),
        _ => format!("{value:.1} {}", units[unit]),
    }
}

/// Fills `buffer` from `reader` as far as it goes; the bytes read.
fn read_up_to(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The values a well-formed header announces (None where the header is short or the count
/// does not fit in memory's addresses).
fn body_len(header: &[u8], ndims: usize) -> Option<usize> {
    if header.len() < 4 + 4 * ndims {
        return None;
    }
    dims(header, ndims)
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
}

fn dims(bytes: &[u8], ndims: usize) -> Vec<usize> {
    bytes[4..4 + 4 * ndims]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect()
}

/// The file's bytes, gunzipped if they start with the gzip magic number (for tools and tests;
/// the reader is `read_idx`).
pub fn decompressed(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Format {
            path: path.to_path_buf(),
            detail: format!("corrupt gzip data: {e}"),
        })?;
    Ok(bytes)
}

/// Checks the header and that the file holds exactly the values its dimensions announce.
pub fn parse_idx(bytes: &[u8], ndims: usize) -> std::result::Result<IdxArray, String> {
    let dims = check_idx(bytes, ndims)?;
    Ok(IdxArray {
        dims,
        data: bytes[4 + 4 * ndims..].to_vec(),
    })
}

/// `parse_idx` of a file read whole, its values kept where they are: a dataset of gigabytes
/// is never held twice.
fn into_idx(mut bytes: Vec<u8>, ndims: usize) -> std::result::Result<IdxArray, String> {
    let dims = check_idx(&bytes, ndims)?;
    bytes.drain(..4 + 4 * ndims);
    Ok(IdxArray { dims, data: bytes })
}

/// The dimensions of a well-formed IDX file of `ndims` dimensions.
fn check_idx(bytes: &[u8], ndims: usize) -> std::result::Result<Vec<usize>, String> {
    let header_len = 4 + 4 * ndims;
    if bytes.len() < header_len {
        return Err(format!(
            "{} bytes is too short for an IDX header of {ndims} dimensions",
            bytes.len()
        ));
    }
    let expected_magic = [0, 0, UNSIGNED_BYTE, ndims as u8];
    if bytes[..4] != expected_magic {
        return Err(format!(
            "magic number {:02x?} is not that of an IDX file of unsigned bytes with {ndims} dimensions ({expected_magic:02x?})",
            &bytes[..4]
        ));
    }
    let dims = dims(bytes, ndims);
    let values = body_len(bytes, ndims)
        .ok_or_else(|| format!("dimensions {dims:?} announce more values than memory can hold"))?;
    let body = &bytes[header_len..];
    if body.len() < values {
        return Err(format!(
            "dimensions {dims:?} announce {values} values but the file holds {}",
            body.len()
        ));
    }
    if body.len() > values {
        return Err(format!(
            "dimensions {dims:?} announce {values} values, and more data follows them"
        ));
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::parse_idx;

    fn header(magic: [u8; 4], dims: &[u32]) -> Vec<u8> {
        let mut bytes = magic.to_vec();
        dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
        bytes
    }

    #[test]
    fn reads_a_well_formed_array() {
        let mut bytes = header([0, 0, 8, 3], &[2, 1, 3]);
        bytes.extend([1, 2, 3, 4, 5, 6]);
        let array = parse_idx(&bytes, 3).expect("valid");
        assert_eq!(array.dims, [2, 1, 3]);
        assert_eq!(array.data, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rejects_a_wrong_magic_number() {
        // A labels file (one dimension) where images (three) are expected.
        let labels_header = header([0, 0, 8, 1], &[2, 0, 0]);
        let error = parse_idx(&labels_header, 3).expect_err("labels read as images");
        assert!(error.contains("magic number"), "{error}");
        let float_data = header([0, 0, 0x0d, 1], &[0]);
        let error = parse_idx(&float_data, 1).expect_err("float data");
        assert!(error.contains("magic number"), "{error}");
    }

    #[test]
    fn rejects_a_body_of_the_wrong_length() {
        let mut bytes = header([0, 0, 8, 1], &[3]);
        bytes.extend([7, 7]);
        let error = parse_idx(&bytes, 1).expect_err("short body");
        assert!(
            error.contains("announce 3 values") && error.contains("holds 2"),
            "{error}"
        );
        bytes.extend([7, 7]);
        let error = parse_idx(&bytes, 1).expect_err("long body");
        assert!(error.contains("more data follows"), "{error}");
    }

    /// 6000 x 2^31 x 2^31 wraps to 0 in 64 bits: it must be an error, not an empty array.
    #[test]
    fn rejects_dimensions_whose_product_overflows() {
        let bytes = header([0, 0, 8, 3], &[6000, 1 << 31, 1 << 31]);
        let error = parse_idx(&bytes, 3).expect_err("overflow");
        assert!(
            error.contains("more values than memory can hold"),
            "{error}"
        );
    }

    #[test]
    fn rejects_a_truncated_header() {
        let error = parse_idx(&[0, 0, 8, 3, 0, 0], 3).expect_err("short header");
        assert!(error.contains("too short"), "{error}");
    }
}
