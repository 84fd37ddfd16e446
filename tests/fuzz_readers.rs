//! Fuzzing the readers of user files on the stable toolchain, inside `cargo test`: NIfTI-1
//! and NIfTI-2 single files (with and without extensions, either byte order, 3D and 4D),
//! `.hdr`/`.img` pairs, gzip streams, split files, `config.toml` (a training configuration,
//! and a checkpoint's `train.toml`) and a model's `config.json`.
//!
//! Seeds are files the project's own writers produce plus hand-built headers for what they do
//! not write (NIfTI-2 big-endian, 4D, extensions, pairs), and nibabel's test images when
//! nibabel is installed. A deterministic loop mutates them (see `fuzz/mutate.rs`) and calls
//! the real readers under `catch_unwind`, checking for every input:
//! - no panic;
//! - no allocation beyond what the file can hold: the test binary's global allocator records
//!   the largest request of the thread, which must stay under a small multiple of the input's
//!   (decompressed) size, and refuses any request over 1 GiB outright;
//! - every failure an error whose message names the file; NIfTI, split and JSON errors are
//!   one line (TOML errors are multi-line `toml` messages that the CLI prints on one line).
//!
//! The seed of each loop is fixed, so a failure is reproduced by running the test again; the
//! failing input is also saved under the cargo target's temporary folder.

#[path = "fuzz/mutate.rs"]
mod mutate;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use a2fseg::volume::{
    Geometry, Grid, NonFinite, read_geometry, read_volume, read_volume_with, volume_info,
    write_float, write_labels,
};
use mutate::{Layout, Rng, content_len, gzip, mutate_bytes, overwrite_field, regzip};

/// Any single allocation above this is refused (the process aborts with "memory allocation
/// of N bytes failed"): no seed or mutation here comes near it.
const HARD_CAP: usize = 1 << 30;

thread_local! {
    /// The largest allocation the thread asked for since the last [`take_largest`].
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, recording each thread's largest request and refusing huge ones.
struct Capped;

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator, or refused with a null
// pointer, which `GlobalAlloc` allows.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        note(layout.size());
        if layout.size() > HARD_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        note(layout.size());
        if layout.size() > HARD_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        note(new_size);
        if new_size > HARD_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

/// The largest allocation of this thread since the previous call.
fn take_largest() -> usize {
    LARGEST.with(|c| c.replace(0))
}

/// What a reader may allocate at most for an input whose largest file holds `content`
/// bytes (decompressed): the file, its voxels as f32 (4 bytes per 1-byte voxel), a doubling
/// buffer's slack, and a fixed allowance for the decoder's state and messages.
fn budget(content: usize) -> usize {
    8 * content + (256 << 10)
}

/// Saves a failing input for inspection and fails the test with `what`.
fn fail(files: &[(PathBuf, Vec<u8>)], what: String) -> ! {
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failure");
    let _ = fs::create_dir_all(&keep);
    for (p, bytes) in files {
        let _ = fs::write(keep.join(p.file_name().unwrap()), bytes);
    }
    panic!("{what} (input saved in {})", keep.display());
}

/// A NIfTI seed: its files (uncompressed content, whether the file is gzipped), the file to
/// open, and the header layout to aim field overwrites at.
#[derive(Clone)]
struct Seed {
    /// (file name, content, gzipped); the first file holds the header.
    files: Vec<(String, Vec<u8>, bool)>,
    /// Index into `files` of the name to pass to the reader.
    open: usize,
    layout: Layout,
    big: bool,
}

/// A NIfTI-2 header (magic `n+2` or `ni2`), little- or big-endian, for dims `dims`
/// (`dims.len()` dimensions) of `datatype`, with a 1.5 mm spacing and an sform.
fn nifti2_header(dims: &[i64], datatype: i16, vox_offset: i64, pair: bool, big: bool) -> Vec<u8> {
    let mut h = vec![0u8; 540];
    let put = |h: &mut Vec<u8>, at: usize, le: &[u8]| {
        let mut v = le.to_vec();
        if big {
            v.reverse();
        }
        h[at..at + v.len()].copy_from_slice(&v);
    };
    put(&mut h, 0, &540i32.to_le_bytes());
    let magic: &[u8; 8] = if pair {
        b"ni2\0\r\n\x1a\n"
    } else {
        b"n+2\0\r\n\x1a\n"
    };
    h[4..12].copy_from_slice(magic);
    put(&mut h, 12, &datatype.to_le_bytes());
    let bits = match datatype {
        2 | 256 => 8i16,
        4 | 512 => 16,
        16 | 8 | 768 => 32,
        _ => 64,
    };
    put(&mut h, 14, &bits.to_le_bytes());
    put(&mut h, 16, &(dims.len() as i64).to_le_bytes());
    for (i, d) in dims.iter().enumerate() {
        put(&mut h, 24 + 8 * i, &d.to_le_bytes());
    }
    for i in 0..8 {
        put(&mut h, 104 + 8 * i, &1.5f64.to_le_bytes());
    }
    put(&mut h, 168, &vox_offset.to_le_bytes()); // int64 in NIfTI-2
    put(&mut h, 176, &1.0f64.to_le_bytes());
    put(&mut h, 348, &1i32.to_le_bytes()); // sform_code
    for r in 0..3 {
        put(&mut h, 400 + 32 * r + 8 * r, &1.5f64.to_le_bytes());
        put(&mut h, 400 + 32 * r + 24, &(-10.0f64).to_le_bytes());
    }
    h
}

/// Inserts a 32-byte comment extension after the header of a single file, moving the data.
fn with_extension(file: &[u8], layout: Layout) -> Vec<u8> {
    let (header, offset_at) = match layout {
        Layout::V1 => (348, 108),
        Layout::V2 => (540, 168),
    };
    let mut out = file[..header].to_vec();
    out.extend_from_slice(&[1, 0, 0, 0]);
    out.extend_from_slice(&32i32.to_le_bytes());
    out.extend_from_slice(&6i32.to_le_bytes());
    out.extend_from_slice(b"fuzzing seed comment....");
    out.extend_from_slice(&file[header + 4..]);
    match layout {
        Layout::V1 => {
            let v = f32::from_le_bytes(file[108..112].try_into().unwrap()) + 32.0;
            out[offset_at..offset_at + 4].copy_from_slice(&v.to_le_bytes());
        }
        Layout::V2 => {
            let v = i64::from_le_bytes(file[168..176].try_into().unwrap()) + 32;
            out[offset_at..offset_at + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    out
}

fn ungzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut out).unwrap();
    out
}

/// Single-file seeds: the project's writers (NIfTI-1 uint8 and float32, NIfTI-2 float32
/// through a NIfTI-2 reference geometry), then hand-built NIfTI-2 files (big-endian, 4D),
/// each also with an extension and gzipped.
fn single_file_seeds(dir: &Path) -> Vec<Seed> {
    let mut affine = [[0.0; 4]; 4];
    for (i, row) in affine.iter_mut().enumerate() {
        row[i] = 1.0 + i as f64 * 0.25;
        row[3] = -5.0;
    }
    affine[3] = [0.0, 0.0, 0.0, 1.0];
    let g1 = Geometry::from_affine([3, 4, 5], affine);
    let labels = Grid::from_vec([3, 4, 5], (0..60).map(|i| (i % 5) as u8).collect()).unwrap();
    let floats = labels.map(|v| f32::from(v) * 0.5 - 1.0);
    let written = |name: &str, float: bool, g: &Geometry| {
        let p = dir.join(name);
        if float {
            write_float(&p, g, &floats).unwrap();
        } else {
            write_labels(&p, g, &labels).unwrap();
        }
        let bytes = fs::read(&p).unwrap();
        if name.ends_with(".gz") {
            ungzip(&bytes)
        } else {
            bytes
        }
    };
    let v2_header = nifti2_header(&[3, 4, 5], 16, 544, false, false);
    let g2 = Geometry::from_header_bytes(&v2_header).unwrap();
    let mut be = nifti2_header(&[2, 3, 2, 2], 4, 544, false, true);
    be.extend_from_slice(&[0; 4]);
    be.extend((0i16..24).flat_map(|v| (v * 100 - 900).to_be_bytes()));
    let mut v2_4d = nifti2_header(&[2, 2, 2, 3], 64, 544, false, false);
    v2_4d.extend_from_slice(&[0; 4]);
    v2_4d.extend((0..24).flat_map(|v| (f64::from(v) / 3.0).to_le_bytes()));

    let plain = [
        (written("l.nii", false, &g1), Layout::V1, false),
        (written("f.nii.gz", true, &g1), Layout::V1, false),
        (written("t.nii", true, &g2), Layout::V2, false),
        (be, Layout::V2, true),
        (v2_4d, Layout::V2, false),
    ];
    let mut seeds = Vec::new();
    for (content, layout, big) in plain {
        let ext = (!big).then(|| with_extension(&content, layout));
        for c in std::iter::once(content).chain(ext) {
            for gz in [false, true] {
                let name = if gz { "in.nii.gz" } else { "in.nii" };
                seeds.push(Seed {
                    files: vec![(name.into(), c.clone(), gz)],
                    open: 0,
                    layout,
                    big,
                });
            }
        }
    }
    seeds
}

/// `.hdr`/`.img` pair seeds, NIfTI-1 and NIfTI-2, the image plain or gzipped, opened by
/// either name.
fn pair_seeds(dir: &Path) -> Vec<Seed> {
    let single = &single_file_seeds(dir)[0].files[0].1;
    let mut v1 = single[..348].to_vec();
    v1[344..348].copy_from_slice(b"ni1\0");
    v1[108..112].copy_from_slice(&0f32.to_le_bytes());
    let v1_img = single[352..].to_vec();
    let v2 = nifti2_header(&[4, 3, 2], 512, 0, true, false);
    let v2_img: Vec<u8> = (0u16..24).flat_map(|v| (v * 2500).to_le_bytes()).collect();
    let mut seeds = Vec::new();
    for (hdr, img, layout) in [(v1, v1_img, Layout::V1), (v2, v2_img, Layout::V2)] {
        for gz in [false, true] {
            let img_name = if gz { "in.img.gz" } else { "in.img" };
            for open in [0, 1] {
                seeds.push(Seed {
                    files: vec![
                        ("in.hdr".into(), hdr.clone(), false),
                        (img_name.into(), img.clone(), gz),
                    ],
                    open,
                    layout,
                    big: false,
                });
            }
        }
    }
    seeds
}

/// nibabel's small single-file test images, if nibabel is installed (real files from other
/// writers); none otherwise.
fn nibabel_seeds() -> Vec<Seed> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import nibabel, os; print(os.path.dirname(nibabel.__file__))",
        ])
        .output();
    let Ok(out) = out else { return Vec::new() };
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let Ok(entries) = fs::read_dir(root.join("tests/data")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    let mut seeds = Vec::new();
    for p in paths {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let gz = name.ends_with(".nii.gz");
        if !(gz || name.ends_with(".nii")) || fs::metadata(&p).map_or(true, |m| m.len() > 100_000) {
            continue;
        }
        let raw = fs::read(&p).unwrap();
        let content = if gz { ungzip(&raw) } else { raw };
        let layout = match content.get(..4) {
            Some(b) if b == 540i32.to_le_bytes() || b == 540i32.to_be_bytes() => Layout::V2,
            _ => Layout::V1,
        };
        let big = content
            .get(..4)
            .is_some_and(|b| b == 348i32.to_be_bytes() || b == 540i32.to_be_bytes());
        let name = if gz { "in.nii.gz" } else { "in.nii" };
        seeds.push(Seed {
            files: vec![(name.into(), content, gz)],
            open: 0,
            layout,
            big,
        });
    }
    seeds
}

/// Mutates one of `seeds` and writes it into `dir`: 1 to 3 changes (header field
/// overwrites, byte-level changes of the header file or the image file), then each gzipped
/// file re-wrapped (sometimes damaged) or its compressed bytes mutated, and now and then a
/// plain file gzipped. Returns the files written and the path to open.
fn mutated(rng: &mut Rng, seeds: &[Seed], dir: &Path) -> (Vec<(PathBuf, Vec<u8>)>, PathBuf) {
    let seed = rng.pick(seeds).clone();
    let donor = &rng.pick(seeds).files[0].1;
    let mut files = seed.files.clone();
    for _ in 0..1 + rng.below(3) {
        let which = if files.len() > 1 && rng.chance(30) {
            1
        } else {
            0
        };
        let content = &mut files[which].1;
        if which == 0 && rng.chance(40) {
            overwrite_field(rng, content, seed.layout, seed.big);
        } else {
            mutate_bytes(rng, content, 600, donor);
        }
    }
    let mut written = Vec::new();
    for (name, content, gz) in files {
        let bytes = if gz && rng.chance(80) {
            regzip(rng, &content)
        } else if gz {
            let mut z = gzip(&content);
            let hot = z.len();
            mutate_bytes(rng, &mut z, hot, &[]);
            z
        } else if rng.chance(5) {
            gzip(&content)
        } else {
            content
        };
        let path = dir.join(name);
        fs::write(&path, &bytes).unwrap();
        written.push((path, bytes));
    }
    let open = written[seed.open].0.clone();
    // A pair's files from an earlier input must not linger under the other gzip name.
    for stale in ["in.img", "in.img.gz"] {
        let p = dir.join(stale);
        if p.exists() && !written.iter().any(|(w, _)| *w == p) {
            fs::remove_file(p).unwrap();
        }
    }
    (written, open)
}

/// Calls every NIfTI reader on `open` and checks the input's properties (module docs).
fn check_nifti(files: &[(PathBuf, Vec<u8>)], open: &Path) -> bool {
    let content = files.iter().map(|(_, b)| content_len(b)).max().unwrap_or(0);
    let name = open.file_name().unwrap().to_string_lossy().into_owned();
    take_largest();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let kept = read_volume_with(open, NonFinite::Keep);
        if let Ok(v) = &kept {
            volume_info(v);
        }
        let refused = read_volume(open).map(|_| ());
        let geometry = read_geometry(open).map(|_| ());
        [kept.map(|_| ()), refused, geometry]
    }));
    let largest = take_largest();
    let Ok(results) = outcome else {
        fail(files, format!("a reader panicked on {name}"));
    };
    if largest > budget(content) {
        fail(
            files,
            format!("reading {name} ({content} bytes) allocated {largest} bytes at once"),
        );
    }
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        let msg = format!("{e:#}");
        if msg.contains('\n') || !msg.contains(&name) {
            fail(files, format!("error is not one line naming {name}: {msg}"));
        }
    }
    results[0].is_ok()
}

/// Runs `n` mutated inputs of `seeds` through the NIfTI readers; returns how many read.
fn fuzz_nifti(seeds: &[Seed], n: usize, seed: u64) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(seed);
    let mut ok = 0;
    for _ in 0..n {
        let (files, open) = mutated(&mut rng, seeds, dir.path());
        ok += usize::from(check_nifti(&files, &open));
    }
    ok
}

/// Each seed reads unchanged (the mutations start from valid files), then `n` mutants.
fn fuzz_family(seeds: Vec<Seed>, n: usize, seed: u64) {
    assert!(!seeds.is_empty());
    let dir = tempfile::tempdir().unwrap();
    for s in &seeds {
        let mut files = Vec::new();
        for (name, content, gz) in &s.files {
            let p = dir.path().join(name);
            let bytes = if *gz { gzip(content) } else { content.clone() };
            fs::write(&p, &bytes).unwrap();
            files.push((p, bytes));
        }
        let open = files[s.open].0.clone();
        if let Err(e) = read_volume_with(&open, NonFinite::Keep) {
            panic!("seed {} does not read: {e:#}", s.files[s.open].0);
        }
        for (p, _) in &files {
            fs::remove_file(p).unwrap();
        }
    }
    let ok = fuzz_nifti(&seeds, n, seed);
    // Mutations must leave a share of readable files, or the loop only tests the refusals.
    assert!(ok > n / 50 && ok < n, "{ok} of {n} mutants read");
}

/// The allocation check can fail: a large request is seen, and only by its own thread.
#[test]
fn the_allocator_records_the_largest_request() {
    take_largest();
    let big: Vec<u8> = Vec::with_capacity(10 << 20);
    drop(big);
    assert!(take_largest() >= 10 << 20);
    std::thread::spawn(|| drop(Vec::<u8>::with_capacity(20 << 20)))
        .join()
        .unwrap();
    assert!(take_largest() < 10 << 20);
}

#[test]
fn fuzz_single_nifti_files() {
    let dir = tempfile::tempdir().unwrap();
    fuzz_family(single_file_seeds(dir.path()), 35_000, 1);
}

#[test]
fn fuzz_header_image_pairs() {
    let dir = tempfile::tempdir().unwrap();
    fuzz_family(pair_seeds(dir.path()), 20_000, 2);
}

#[test]
fn fuzz_nibabel_files() {
    let seeds = nibabel_seeds();
    if seeds.is_empty() {
        // The generated seeds already cover NIfTI-1 and -2; this adds other writers' files.
        eprintln!("skipped: nibabel is not installed");
        return;
    }
    // Only the files a2fseg reads (nibabel's also include 5D and 6D images, which it refuses).
    let dir = tempfile::tempdir().unwrap();
    let readable: Vec<Seed> = seeds
        .into_iter()
        .filter(|s| {
            let (name, content, gz) = &s.files[0];
            let p = dir.path().join(name);
            fs::write(&p, if *gz { gzip(content) } else { content.clone() }).unwrap();
            read_volume_with(&p, NonFinite::Keep).is_ok()
        })
        .collect();
    fuzz_family(readable, 10_000, 3);
}

#[path = "fuzz/text.rs"]
mod text;
