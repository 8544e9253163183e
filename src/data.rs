//! Datasets: the IDX format (MNIST's, raw or gzipped), image/label pairs, and batching order.
//!
//! Every malformed input is an `Err` naming what is wrong; sizes are checked against the bytes
//! actually present before anything is allocated, so a header claiming billions of images costs
//! nothing.

use std::fmt;
use std::io::Read;

use crate::rng::Rng;

/// The largest decompressed IDX file we accept (the official MNIST training images are 47 MB).
pub const MAX_IDX_BYTES: usize = 512 << 20;
/// Labels are classes 0..CLASSES: the page colours ten, one per digit.
pub const CLASSES: u8 = 10;

#[derive(Clone, Debug, PartialEq)]
pub enum DataError {
    Empty,
    Gzip(String),
    TooLarge { limit: usize },
    BadMagic { found: [u8; 4] },
    NotBytes { type_code: u8 },
    WrongRank { expected: u8, found: u8 },
    TruncatedHeader { needed: usize, found: usize },
    SizeMismatch { header_bytes: u64, found: usize },
    ZeroSize,
    CountMismatch { images: usize, labels: usize },
    LabelOutOfRange { index: usize, label: u8 },
    /// A set of files that does not make a dataset (wrong number, unpaired, different sizes).
    Files(String),
    /// An error in one named file of a set.
    InFile { name: String, error: Box<DataError> },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Empty => write!(f, "the file is empty"),
            DataError::Gzip(e) => write!(f, "the file looks gzipped but does not decompress: {e}"),
            DataError::TooLarge { limit } => write!(f, "the file holds more than {} MB of data, more than can be used here", limit >> 20),
            DataError::BadMagic { found } => write!(
                f,
                "not an IDX file: it starts with bytes {found:02x?}, but IDX files start with 00 00 <type> <rank>"
            ),
            DataError::NotBytes { type_code } => {
                write!(f, "IDX element type 0x{type_code:02x} is not supported (only unsigned bytes, 0x08)")
            }
            DataError::WrongRank { expected, found } => write!(
                f,
                "IDX file has {found} dimensions but {} need {expected}",
                if *expected == 3 { "images" } else { "labels" }
            ),
            DataError::TruncatedHeader { needed, found } => {
                write!(f, "the IDX header is cut short: it needs {needed} bytes, the file has {found}")
            }
            DataError::SizeMismatch { header_bytes, found } => write!(
                f,
                "the IDX header describes {header_bytes} bytes of data but the file holds {found} \
                 (truncated, or not the file it claims to be)"
            ),
            DataError::ZeroSize => write!(f, "the IDX file holds no items (a dimension is zero)"),
            DataError::CountMismatch { images, labels } => {
                write!(f, "the images file holds {images} images but the labels file holds {labels} labels")
            }
            DataError::LabelOutOfRange { index, label } => write!(
                f,
                "label {label} (item {index}) is outside 0-{}: this page shows ten classes, one per digit",
                CLASSES - 1
            ),
            DataError::Files(why) => write!(f, "{why}"),
            DataError::InFile { name, error } => write!(f, "{name}: {error}"),
        }
    }
}

impl std::error::Error for DataError {}

/// The contents of an IDX file of unsigned bytes: its dimensions and its data.
#[derive(Clone, Debug, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The longest IDX header: magic + 4 dimensions of 4 bytes.
const MAX_HEADER: usize = 4 + 4 * 4;

/// What an IDX header says: the dimensions, the header's length and the data's length.
#[derive(Clone, Debug, PartialEq)]
struct IdxHeader {
    dims: Vec<usize>,
    len: usize,
    data_bytes: u64,
}

/// Reads an IDX header from the first bytes of a (decompressed) file.
fn idx_header(prefix: &[u8]) -> Result<IdxHeader, DataError> {
    if prefix.len() < 4 {
        return Err(DataError::TruncatedHeader { needed: 4, found: prefix.len() });
    }
    let magic = [prefix[0], prefix[1], prefix[2], prefix[3]];
    if magic[0] != 0 || magic[1] != 0 || magic[3] == 0 || magic[3] > 4 {
        return Err(DataError::BadMagic { found: magic });
    }
    if magic[2] != 0x08 {
        return Err(DataError::NotBytes { type_code: magic[2] });
    }
    let len = 4 + 4 * magic[3] as usize;
    if prefix.len() < len {
        return Err(DataError::TruncatedHeader { needed: len, found: prefix.len() });
    }
    let dims: Vec<usize> = prefix[4..len].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    // In u64 so that absurd headers cannot overflow; compared with what is really there later.
    let data_bytes = dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d as u64));
    if data_bytes == 0 {
        return Err(DataError::ZeroSize);
    }
    Ok(IdxHeader { dims, len, data_bytes })
}

/// An IDX file as given (raw or gzipped), of which only the header has been read: enough to
/// pair files and check sizes before anything large is decompressed or copied.
struct IdxFile<'a> {
    bytes: &'a [u8],
    header: IdxHeader,
}

impl<'a> IdxFile<'a> {
    /// Reads the header, decompressing only the first few bytes of a gzipped file. Refuses a
    /// file whose header promises more than `max_bytes` of data.
    fn open(bytes: &'a [u8], max_bytes: usize) -> Result<IdxFile<'a>, DataError> {
        if bytes.is_empty() {
            return Err(DataError::Empty);
        }
        let header = if bytes.starts_with(&GZIP_MAGIC) {
            let mut prefix = Vec::with_capacity(MAX_HEADER);
            flate2::read::MultiGzDecoder::new(bytes)
                .take(MAX_HEADER as u64)
                .read_to_end(&mut prefix)
                .map_err(|e| DataError::Gzip(e.to_string()))?;
            idx_header(&prefix)?
        } else {
            idx_header(bytes)?
        };
        if header.data_bytes > max_bytes as u64 {
            return Err(DataError::TooLarge { limit: max_bytes });
        }
        // A raw file's size is known now (a gzipped one's only once decompressed).
        let found = bytes.len() - header.len;
        if !bytes.starts_with(&GZIP_MAGIC) && header.data_bytes != found as u64 {
            return Err(DataError::SizeMismatch { header_bytes: header.data_bytes, found });
        }
        Ok(IdxFile { bytes, header })
    }

    /// The whole file's data, in one buffer of exactly the promised size.
    fn read(self) -> Result<Idx, DataError> {
        let IdxHeader { dims, len, data_bytes } = self.header;
        let data = if self.bytes.starts_with(&GZIP_MAGIC) {
            gunzip_data(self.bytes, len, data_bytes)?
        } else {
            self.bytes[len..].to_vec()
        };
        Ok(Idx { dims, data })
    }

    fn rank(&self) -> usize {
        self.header.dims.len()
    }

    fn count(&self) -> usize {
        self.header.dims[0]
    }
}

/// The `size` bytes after the `skip`-byte header of a gzip stream, in one buffer of exactly
/// that size. The stream is read twice: first only counted, through a small scratch buffer and
/// stopping one byte past the promise, and then, once it has been seen to deliver exactly the
/// promised size, into the buffer. So a short file promising much costs time, not memory, and
/// an honest one takes its size once (a buffer grown by doubling left the browser's heap, which
/// never shrinks, at twice the data).
fn gunzip_data(gz: &[u8], skip: usize, size: u64) -> Result<Vec<u8>, DataError> {
    let gzip_error = |e: std::io::Error| DataError::Gzip(e.to_string());
    let stream = || flate2::read::MultiGzDecoder::new(gz);
    let total = std::io::copy(&mut stream().take(skip as u64 + size + 1), &mut std::io::sink()).map_err(gzip_error)?;
    let found = total.saturating_sub(skip as u64);
    if found != size {
        return Err(DataError::SizeMismatch { header_bytes: size, found: found as usize });
    }
    let mut decoder = stream();
    std::io::copy(&mut (&mut decoder).take(skip as u64), &mut std::io::sink()).map_err(gzip_error)?;
    let mut data = vec![0u8; size as usize];
    decoder.read_exact(&mut data).map_err(gzip_error)?;
    Ok(data)
}

/// Parses an IDX file (raw or gzipped) of unsigned bytes with the given rank.
pub fn parse_idx(bytes: &[u8], rank: u8) -> Result<Idx, DataError> {
    let file = IdxFile::open(bytes, MAX_IDX_BYTES)?;
    if file.rank() != rank as usize {
        return Err(DataError::WrongRank { expected: rank, found: file.rank() as u8 });
    }
    file.read()
}

/// Wraps an error in the name of the file it is about.
fn in_file(name: &str) -> impl Fn(DataError) -> DataError + '_ {
    move |error| DataError::InFile { name: name.to_string(), error: Box::new(error) }
}

/// Whether a file's name says it belongs to the training or the test set, as MNIST's names
/// (`train-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`) and most others do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    Train,
    Test,
}

fn split_of(name: &str) -> Option<Split> {
    let name = name.to_ascii_lowercase();
    match (name.contains("train"), name.contains("t10k") || name.contains("test")) {
        (true, false) => Some(Split::Train),
        (false, true) => Some(Split::Test),
        _ => None,
    }
}

/// A training and a test set from files the user chose, in any order, raw or gzipped: the four
/// official files (images and labels, training and test), or one images file with its labels
/// file, of which the last tenth (at most 10,000) becomes the test set. Files are told apart by
/// their IDX rank (3 = images, 1 = labels); four are paired by name where the names say which
/// set each belongs to (train / t10k or test), otherwise by count (the larger pair trains), and
/// refused when neither decides. Headers are read and checked first: nothing is decompressed
/// if the images would need more than `max_image_bytes` (e.g. the GPU's largest buffer).
pub fn datasets_from_files(files: &[(&str, &[u8])], max_image_bytes: usize) -> Result<(Dataset, Dataset), DataError> {
    if files.len() != 2 && files.len() != 4 {
        return Err(DataError::Files(format!(
            "choose 2 files (images and labels) or 4 (training and test images and labels); got {}",
            files.len()
        )));
    }
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for &(name, bytes) in files {
        let file = IdxFile::open(bytes, MAX_IDX_BYTES).map_err(in_file(name))?;
        match file.rank() {
            3 => images.push((name, file)),
            1 => labels.push((name, file)),
            n => return Err(in_file(name)(DataError::Files(format!("has {n} dimensions; IDX images have 3 and labels 1")))),
        }
    }
    if images.len() != labels.len() {
        return Err(DataError::Files(format!(
            "got {} images files and {} labels files; each images file needs its labels file",
            images.len(),
            labels.len()
        )));
    }
    let image_bytes: u64 = images.iter().map(|(_, f)| f.header.data_bytes).sum();
    if image_bytes > max_image_bytes as u64 {
        return Err(DataError::Files(format!(
            "the images need {} MB but this GPU holds at most {} MB in one buffer; choose a smaller dataset",
            image_bytes >> 20,
            max_image_bytes >> 20
        )));
    }
    if images.len() == 2 {
        order_pairs(&mut images, &mut labels)?;
    }
    let mut sets = Vec::new();
    for ((image_name, i), (label_name, l)) in images.into_iter().zip(labels) {
        if i.count() != l.count() {
            return Err(DataError::Files(format!("{image_name} holds {} images but {label_name} holds {} labels", i.count(), l.count())));
        }
        let images = i.read().map_err(in_file(image_name))?;
        let labels = l.read().map_err(in_file(label_name))?;
        // The counts agree (checked above): what can still be wrong is in the labels.
        sets.push(Dataset::from_parts(images, labels).map_err(in_file(label_name))?);
    }
    if let [train, test] = &sets[..] {
        if (train.rows, train.cols) != (test.rows, test.cols) {
            return Err(DataError::Files(format!(
                "the training images are {}x{} but the test images are {}x{}",
                train.rows, train.cols, test.rows, test.cols
            )));
        }
    }
    let mut sets = sets.into_iter();
    let first = sets.next().expect("one pair at least");
    match sets.next() {
        Some(test) => Ok((first, test)),
        None => first.split_off_test(),
    }
}

/// Puts two images files and two labels files in (training, test) order: by their names where
/// these say which set every file belongs to, otherwise by count (the larger set trains).
fn order_pairs(images: &mut [(&str, IdxFile)], labels: &mut [(&str, IdxFile)]) -> Result<(), DataError> {
    let splits = |files: &[(&str, IdxFile)]| [split_of(files[0].0), split_of(files[1].0)];
    let by_name = |files: &mut [(&str, IdxFile)]| match splits(files) {
        [Some(Split::Train), Some(Split::Test)] => Some(()),
        [Some(Split::Test), Some(Split::Train)] => {
            files.swap(0, 1);
            Some(())
        }
        _ => None,
    };
    // Names decide only when they tell all four files apart.
    if splits(images).iter().chain(&splits(labels)).all(Option::is_some) && by_name(images).is_some() && by_name(labels).is_some() {
        return Ok(());
    }
    let distinct = |files: &[(&str, IdxFile)]| files[0].1.count() != files[1].1.count();
    if distinct(images) && distinct(labels) {
        images.sort_by_key(|(_, f)| std::cmp::Reverse(f.count()));
        labels.sort_by_key(|(_, f)| std::cmp::Reverse(f.count()));
        return Ok(());
    }
    Err(DataError::Files(format!(
        "cannot tell which images go with which labels: {} and {} hold {} and {} images, {} and {} hold {} and {} labels, \
         and the names do not say which are for training and which for testing (name them like MNIST's: \
         train-images…, train-labels…, t10k-images…, t10k-labels…)",
        images[0].0,
        images[1].0,
        images[0].1.count(),
        images[1].1.count(),
        labels[0].0,
        labels[1].0,
        labels[0].1.count(),
        labels[1].1.count()
    )))
}

/// Images with their labels, pixels as bytes (0 = background, 255 = ink).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `count * rows * cols` bytes, image after image, row-major.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Dataset {
    /// Pairs an images file (rank 3) with a labels file (rank 1); each raw or gzipped.
    pub fn from_idx(images: &[u8], labels: &[u8]) -> Result<Dataset, DataError> {
        Dataset::from_parts(parse_idx(images, 3)?, parse_idx(labels, 1)?)
    }

    /// Images and labels already parsed, as one dataset: the counts must agree and the labels
    /// be digits' (0-9), the classes the page can tell apart by colour.
    fn from_parts(images: Idx, labels: Idx) -> Result<Dataset, DataError> {
        if images.dims[0] != labels.dims[0] {
            return Err(DataError::CountMismatch { images: images.dims[0], labels: labels.dims[0] });
        }
        if let Some((index, &label)) = labels.data.iter().enumerate().find(|(_, &l)| l >= CLASSES) {
            return Err(DataError::LabelOutOfRange { index, label });
        }
        Ok(Dataset { count: images.dims[0], rows: images.dims[1], cols: images.dims[2], pixels: images.data, labels: labels.data })
    }

    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// Image `i` as floats in [0, 1].
    pub fn image(&self, i: usize) -> Vec<f32> {
        let n = self.pixels_per_image();
        self.pixels[i * n..(i + 1) * n].iter().map(|&p| p as f32 / 255.0).collect()
    }

    /// The average image, as floats in [0, 1].
    pub fn mean_image(&self) -> Vec<f32> {
        let n = self.pixels_per_image();
        let mut sum = vec![0u64; n];
        for image in self.pixels.chunks_exact(n) {
            for (s, &p) in sum.iter_mut().zip(image) {
                *s += p as u64;
            }
        }
        sum.into_iter().map(|s| s as f32 / (255.0 * self.count as f32)).collect()
    }

    /// Splits off the last tenth (at most 10,000 items) as a test set: (train, test).
    fn split_off_test(mut self) -> Result<(Dataset, Dataset), DataError> {
        if self.count < 2 {
            return Err(DataError::Files("one image is too few to split into training and test sets".into()));
        }
        let test_count = (self.count / 10).clamp(1, 10_000);
        let keep = self.count - test_count;
        let n = self.pixels_per_image();
        let test = Dataset {
            count: test_count,
            rows: self.rows,
            cols: self.cols,
            pixels: self.pixels.split_off(keep * n),
            labels: self.labels.split_off(keep),
        };
        self.count = keep;
        Ok((self, test))
    }

    /// The first `n` items (for small tests).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.count);
        Dataset {
            count: n,
            rows: self.rows,
            cols: self.cols,
            pixels: self.pixels[..n * self.pixels_per_image()].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }
}

/// The bundled MNIST subset (see `www/data/README.md`): (train, test).
#[cfg(not(target_arch = "wasm32"))]
pub fn bundled_mnist() -> Result<(Dataset, Dataset), DataError> {
    let train = Dataset::from_idx(
        include_bytes!("../www/data/train-images-idx3-ubyte.gz"),
        include_bytes!("../www/data/train-labels-idx1-ubyte.gz"),
    )?;
    let test = Dataset::from_idx(
        include_bytes!("../www/data/t10k-images-idx3-ubyte.gz"),
        include_bytes!("../www/data/t10k-labels-idx1-ubyte.gz"),
    )?;
    Ok((train, test))
}

/// The order in which an epoch visits the training set: a seeded Fisher-Yates shuffle, so the
/// CPU oracle and the GPU trainer see the same batches.
pub fn epoch_permutation(count: usize, seed: u32, epoch: u32) -> Vec<u32> {
    let mut order: Vec<u32> = (0..count as u32).collect();
    let mut rng = Rng::new(seed ^ epoch.wrapping_mul(0x85EB_CA6B).wrapping_add(0x27D4_EB2F));
    for i in (1..count).rev() {
        let j = ((rng.next_u32() as u64 * (i as u64 + 1)) >> 32) as usize;
        order.swap(i, j);
    }
    order
}

/// A digit drawn by hand (ink in [0, 1], `width` x `height`, row-major) prepared as MNIST's
/// digits were, for images of `rows` x `cols`: its bounding box scaled (keeping its aspect
/// ratio, with area averaging) to fit 20/28 of the image's shorter side (20x20 in MNIST's
/// 28x28), then placed so that its centre of mass is at the image's centre.
/// A blank drawing gives a blank image.
pub fn centre_digit(ink: &[f32], width: usize, height: usize, rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(ink.len(), width * height, "ink must be width x height");
    let box_side = (rows.min(cols) as f64 * 20.0 / 28.0).round().max(1.0);
    let mut out = vec![0f32; rows * cols];
    let inked = |x: usize, y: usize| ink[y * width + x] > 0.05;
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..height {
        for x in 0..width {
            if inked(x, y) {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    if x0 == usize::MAX {
        return out;
    }
    let (bw, bh) = ((x1 - x0 + 1) as f64, (y1 - y0 + 1) as f64);
    let scale = box_side / bw.max(bh);
    let (w, h) = (((bw * scale).round() as usize).max(1), ((bh * scale).round() as usize).max(1));
    // Area averaging: each output pixel is the mean of an n x n grid of source samples.
    let n = ((1.0 / scale).ceil() as usize).clamp(1, 16) * 2;
    let mut small = vec![0f64; w * h];
    for (i, v) in small.iter_mut().enumerate() {
        let (ox, oy) = ((i % w) as f64, (i / w) as f64);
        let mut sum = 0.0;
        for sy in 0..n {
            for sx in 0..n {
                let x = x0 as f64 + (ox + (sx as f64 + 0.5) / n as f64) / scale;
                let y = y0 as f64 + (oy + (sy as f64 + 0.5) / n as f64) / scale;
                sum += ink[(y as usize).min(height - 1) * width + (x as usize).min(width - 1)] as f64;
            }
        }
        *v = sum / (n * n) as f64;
    }
    let total: f64 = small.iter().sum();
    if total <= 0.0 {
        return out;
    }
    let (cx, cy) = small.iter().enumerate().fold((0.0, 0.0), |(cx, cy), (i, &v)| (cx + v * (i % w) as f64, cy + v * (i / w) as f64));
    // Shift so the centre of mass lands on the image's centre (13.5 in 28x28), staying inside
    // (the box is at most the shorter side, so it fits).
    let left = (((cols as f64 - 1.0) / 2.0 - cx / total).round() as isize).clamp(0, (cols - w) as isize) as usize;
    let top = (((rows as f64 - 1.0) / 2.0 - cy / total).round() as isize).clamp(0, (rows - h) as isize) as usize;
    for (i, &v) in small.iter().enumerate() {
        out[(top + i / w) * cols + left + i % w] = v.min(1.0) as f32;
    }
    out
}
