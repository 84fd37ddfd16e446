//! A folder of preprocessed cases that later runs reuse.
//!
//! One safetensors file per case and key: `<id>-<first 16 hex digits of the key>.safetensors`,
//! holding the tensors `t1`, `t1c`, `t2`, `flair` (present modalities only; f32, shape
//! `[D, H, W]` = `[z, y, x]` of the crop box), `classes` (u8 TumourClass indices, same shape,
//! when the case has a segmentation) and `header` (u8, the NIfTI-1 (348-byte) or NIfTI-2
//! (540-byte) header of the original geometry), with string metadata `format`, `key`, `id`, `convention`,
//! `crop_start` and `crop_dims` (JSON `[x, y, z]`).
//!
//! The key is the SHA-256 of the format version, the settings, the label convention, the
//! case id and, for every input file, its absolute path, size and modification time (ns),
//! so a changed file or setting never reuses an old entry; the full key is stored in the
//! file and compared on reading. Files are written atomically; an unreadable or foreign
//! entry is recomputed and replaced.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result, anyhow, bail};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::{SafeTensors, serialize};
use sha2::{Digest, Sha256};

use super::case::{PreprocessSettings, PreprocessedCase, preprocess_case};
use super::crop::CropBox;
use crate::dataset::{CaseFiles, Dataset, load_case};
use crate::fsutil::atomic_write_bytes;
use crate::labels::LabelConvention;
use crate::modality::Modality;
use crate::volume::{Geometry, Grid};

/// Version of the cache file layout; part of the key.
const FORMAT: &str = "a2fseg-preprocessed-1";

/// A cache folder of preprocessed cases.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// The cache key of a case: SHA-256 (hex) of everything its preprocessed form depends on.
pub fn cache_key(
    dataset: &Dataset,
    case: &CaseFiles,
    settings: &PreprocessSettings,
) -> Result<String> {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    };
    field("format", FORMAT.as_bytes());
    field("settings", serde_json::to_string(settings)?.as_bytes());
    field("convention", dataset.convention_of(case).name().as_bytes());
    // A case cached with NaN voxels set to 0 must not pass a strict run unchecked; the
    // default adds nothing, so existing caches stay valid.
    if dataset.strict_finite {
        field("strict-finite", b"1");
    }
    field("id", case.id.as_bytes());
    let mut describe = |role: String, path: &Path, channel: Option<usize>| -> Result<()> {
        let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let text = format!(
            "{}|{}|{}|{}",
            abs.display(),
            meta.len(),
            mtime,
            channel.map_or(-1, |c| c as i64)
        );
        field(&role, text.as_bytes());
        Ok(())
    };
    for m in Modality::ALL {
        if let Some(img) = case.image(m) {
            describe(m.key().to_string(), &img.path, img.channel)?;
        }
    }
    if let Some(seg) = &case.seg {
        describe("seg".to_string(), seg, None)?;
    }
    Ok(hex::encode(h.finalize()))
}

/// A case id made safe as a file-name part.
fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A tensor to serialise: dtype, shape and owned little-endian bytes.
struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::View for &Owned {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// `[x, y, z]` dims as a tensor shape `[z, y, x]`.
fn shape_of(dims: [usize; 3]) -> Vec<usize> {
    vec![dims[2], dims[1], dims[0]]
}

/// Serialises a preprocessed case with its key.
pub fn encode(case: &PreprocessedCase, key: &str) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Owned)> = Vec::new();
    for m in Modality::ALL {
        if let Some(g) = case.image(m) {
            let bytes = g.data().iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push((
                m.key().to_string(),
                Owned {
                    dtype: Dtype::F32,
                    shape: shape_of(g.dims()),
                    bytes,
                },
            ));
        }
    }
    if let Some(c) = &case.classes {
        tensors.push((
            "classes".to_string(),
            Owned {
                dtype: Dtype::U8,
                shape: shape_of(c.dims()),
                bytes: c.data().to_vec(),
            },
        ));
    }
    let header = case.geometry.header_bytes();
    tensors.push((
        "header".to_string(),
        Owned {
            dtype: Dtype::U8,
            shape: vec![header.len()],
            bytes: header,
        },
    ));
    let meta: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("key", key.to_string()),
        ("id", case.id.clone()),
        ("convention", case.convention.name().to_string()),
        ("crop_start", serde_json::to_string(&case.crop.start)?),
        ("crop_dims", serde_json::to_string(&case.crop.dims)?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let refs = tensors.iter().map(|(n, t)| (n.clone(), t));
    serialize(refs, Some(meta)).map_err(|e| anyhow!("cannot encode case {}: {e}", case.id))
}

fn grid_from<T>(
    view: &TensorView<'_>,
    dims: [usize; 3],
    dtype: Dtype,
    conv: impl Fn(&[u8]) -> T,
) -> Result<Grid<T>> {
    if view.dtype() != dtype || view.shape() != shape_of(dims).as_slice() {
        bail!(
            "tensor of dtype {:?} shape {:?}, expected {dtype:?} {:?}",
            view.dtype(),
            view.shape(),
            shape_of(dims)
        );
    }
    let size = dtype.bitsize() / 8;
    let data = view.data().chunks_exact(size).map(conv).collect();
    Grid::from_vec(dims, data).ok_or_else(|| anyhow!("tensor size does not match its shape"))
}

/// Reads a case written by [`encode`], checking that it carries `key` (when given).
pub fn decode(bytes: &[u8], key: Option<&str>) -> Result<PreprocessedCase> {
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("not a safetensors file: {e}"))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("not a safetensors file: {e}"))?;
    let meta = metadata
        .metadata()
        .clone()
        .ok_or_else(|| anyhow!("no metadata"))?;
    let get = |k: &str| {
        meta.get(k)
            .cloned()
            .ok_or_else(|| anyhow!("metadata lacks '{k}'"))
    };
    if get("format")? != FORMAT {
        bail!("format is not {FORMAT}");
    }
    if let Some(key) = key
        && get("key")? != key
    {
        bail!("entry was made from other inputs or settings");
    }
    let convention: LabelConvention = get("convention")?.parse().map_err(|e: String| anyhow!(e))?;
    let crop = CropBox {
        start: serde_json::from_str(&get("crop_start")?)?,
        dims: serde_json::from_str(&get("crop_dims")?)?,
    };
    let header = st.tensor("header").map_err(|e| anyhow!("{e}"))?;
    let geometry = Geometry::from_header_bytes(header.data())?;
    if !crop.fits(geometry.dims) {
        bail!("crop box does not fit the stored geometry");
    }
    let mut images: [Option<Grid<f32>>; 4] = [None, None, None, None];
    for m in Modality::ALL {
        if let Ok(view) = st.tensor(m.key()) {
            images[m.index()] = Some(grid_from(&view, crop.dims, Dtype::F32, |b| {
                f32::from_le_bytes([b[0], b[1], b[2], b[3]])
            })?);
        }
    }
    let classes = match st.tensor("classes") {
        Ok(view) => Some(grid_from(&view, crop.dims, Dtype::U8, |b| b[0])?),
        Err(_) => None,
    };
    Ok(PreprocessedCase {
        id: get("id")?,
        images,
        classes,
        crop,
        geometry,
        convention,
    })
}

impl Cache {
    /// Opens (creating if needed) a cache folder.
    pub fn open(dir: &Path) -> Result<Cache> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create cache folder {}", dir.display()))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry of `case` with `key` lives.
    pub fn entry_path(&self, case: &CaseFiles, key: &str) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.safetensors",
            file_stem(&case.id),
            &key[..16]
        ))
    }

    /// The preprocessed case from the cache if an entry for exactly these inputs and
    /// settings exists, else loads, preprocesses and stores it.
    pub fn get_or_compute(
        &self,
        dataset: &Dataset,
        case: &CaseFiles,
        settings: &PreprocessSettings,
    ) -> Result<PreprocessedCase> {
        let key = cache_key(dataset, case, settings)?;
        let path = self.entry_path(case, &key);
        if let Ok(bytes) = fs::read(&path) {
            match decode(&bytes, Some(&key)) {
                Ok(c) => return Ok(c),
                // A damaged entry (a disk fault, a file from another version) is never used:
                // say so once and rebuild it from the source images.
                Err(e) => eprintln!(
                    "warning: damaged preprocessing cache entry {} ({e:#}); recomputing it",
                    path.display()
                ),
            }
        }
        let loaded = load_case(dataset, case)?;
        let pre = preprocess_case(&loaded, settings)?;
        let bytes = encode(&pre, &key)?;
        atomic_write_bytes(&path, &bytes)?;
        Ok(pre)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::dataset::discover;
    use crate::dataset::load::tests::write_case;

    fn entries(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn reuses_entries_and_never_stale_ones() {
        let data = tempfile::tempdir().unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let id = "BraTS20_Training_001";
        write_case(data.path(), id, [1, 2, 4]);
        let ds = discover(data.path()).unwrap();
        let case = &ds.cases[0];
        let cache = Cache::open(cache_dir.path()).unwrap();
        let settings = PreprocessSettings::default();

        let first = cache.get_or_compute(&ds, case, &settings).unwrap();
        assert_eq!(entries(cache_dir.path()), 1);
        let direct = preprocess_case(&load_case(&ds, case).unwrap(), &settings).unwrap();
        assert_eq!(first, direct);
        let key = cache_key(&ds, case, &settings).unwrap();
        let bytes = fs::read(cache.entry_path(case, &key)).unwrap();
        assert_eq!(decode(&bytes, Some(&key)).unwrap(), direct);
        assert!(decode(&bytes, Some("other")).is_err());

        // A hit is served from the file, not recomputed: plant a marked entry.
        let mut marked = first.clone();
        marked.id = "marked".into();
        atomic_write_bytes(
            &cache.entry_path(case, &key),
            &encode(&marked, &key).unwrap(),
        )
        .unwrap();
        assert_eq!(
            cache.get_or_compute(&ds, case, &settings).unwrap().id,
            "marked"
        );

        // A changed setting is a new entry.
        let other = PreprocessSettings {
            margin: 1,
            ..settings
        };
        assert_ne!(cache_key(&ds, case, &other).unwrap(), key);
        cache.get_or_compute(&ds, case, &other).unwrap();
        assert_eq!(entries(cache_dir.path()), 2);

        // A touched input file is a new key.
        let t1 = data.path().join(format!("{id}/{id}_t1.nii.gz"));
        let f = fs::File::options().write(true).open(&t1).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        drop(f);
        assert_ne!(cache_key(&ds, case, &settings).unwrap(), key);

        // A corrupt entry is recomputed and replaced.
        let key = cache_key(&ds, case, &settings).unwrap();
        let path = cache.entry_path(case, &key);
        cache.get_or_compute(&ds, case, &settings).unwrap();
        fs::write(&path, b"garbage").unwrap();
        assert_eq!(cache.get_or_compute(&ds, case, &settings).unwrap(), first);
        assert!(decode(&fs::read(&path).unwrap(), Some(&key)).is_ok());
    }
}
