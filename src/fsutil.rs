//! File-system helpers shared by every writer: outputs appear complete or not at all, never
//! replace an input, and one folder has one writer at a time.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};

/// Writes a file atomically: `write` fills a temporary file in the destination's folder,
/// which is then flushed, synced and renamed over `path`. A crash or kill at any moment
/// leaves either the old file or the new one, never a half-written file under `path`.
pub fn atomic_write<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<&mut fs::File>) -> Result<()>,
{
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    // Outputs get the usual mode of a new file (0666 minus the umask, as `File::create`),
    // not the 0600 of a temporary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        write(&mut w).with_context(|| format!("cannot write {}", path.display()))?;
        w.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The testing hook fails here, with the temporary file written but not yet renamed: the
    // moment a real disk-full error leaves the most behind to clean up.
    if let Some(e) = injected_write_failure() {
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot move the finished file to {}", path.display()))?;
    Ok(())
}

/// Testing hook: with `A2FSEG_FAIL_WRITES_AFTER=N` in the environment, the first `N`
/// [`atomic_write`]s of the process succeed and every later one fails as a full disk would
/// (`StorageFull`, "no space left on device"), after filling its temporary file. The
/// variable is read once, at the first write. It lets the tests check what a failed write
/// leaves behind (the previous outputs, no temporary file) without filling a real disk.
pub const FAIL_WRITES_AFTER: &str = "A2FSEG_FAIL_WRITES_AFTER";

/// How many writes may still succeed before the injected failures of [`FAIL_WRITES_AFTER`].
#[derive(Debug)]
struct WriteBudget {
    /// `None`: writes never fail (the variable is unset or not a number).
    limit: Option<usize>,
    done: AtomicUsize,
}

impl WriteBudget {
    fn new(limit: Option<usize>) -> WriteBudget {
        WriteBudget {
            limit,
            done: AtomicUsize::new(0),
        }
    }

    /// Counts one write; the error it must fail with once the budget is spent.
    fn spend(&self) -> Option<io::Error> {
        let limit = self.limit?;
        let n = self.done.fetch_add(1, Ordering::SeqCst);
        (n >= limit).then(|| {
            io::Error::new(
                io::ErrorKind::StorageFull,
                format!("no space left on device (injected by {FAIL_WRITES_AFTER}={limit})"),
            )
        })
    }
}

/// The process's [`WriteBudget`], from [`FAIL_WRITES_AFTER`].
fn injected_write_failure() -> Option<io::Error> {
    static BUDGET: OnceLock<WriteBudget> = OnceLock::new();
    BUDGET
        .get_or_init(|| {
            let limit = std::env::var(FAIL_WRITES_AFTER)
                .ok()
                .and_then(|v| v.trim().parse().ok());
            WriteBudget::new(limit)
        })
        .spend()
}

/// Atomically writes `bytes` to `path` (see [`atomic_write`]).
pub fn atomic_write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write(path, |w| Ok(w.write_all(bytes)?))
}

/// Refuses to go on when one of `outputs` is the same file as one of `inputs` (same path,
/// another spelling of it, or a hard link): writing it would replace the user's data, e.g.
/// `predict --flair case_flair.nii.gz --output case_flair.nii.gz`. Outputs that do not exist
/// yet cannot be an input.
pub fn refuse_overwriting_inputs<O, I>(outputs: &[O], inputs: &[I]) -> Result<()>
where
    O: AsRef<Path>,
    I: AsRef<Path>,
{
    for out in outputs.iter().map(AsRef::as_ref) {
        for input in inputs.iter().map(AsRef::as_ref) {
            if same_file::is_same_file(out, input).unwrap_or(false) {
                bail!(
                    "refusing to write {}: it is the input {}; choose another output",
                    out.display(),
                    input.display()
                );
            }
        }
    }
    Ok(())
}

/// The name of the lock file that [`FolderLock`] keeps in a folder.
pub const LOCK_FILE: &str = ".a2fseg.lock";

/// An exclusive claim on an output folder for the life of the value: a second process that
/// tries to write the same run or output folder is refused instead of interleaving its files
/// with the first one's. The claim is an advisory lock on `FOLDER/.a2fseg.lock` (`flock`), so
/// the operating system releases it when the process ends, even by `kill -9`: no stale lock
/// is ever left behind to remove by hand. The file holds the owner's process id for the
/// message.
#[derive(Debug)]
pub struct FolderLock {
    _file: fs::File,
    path: PathBuf,
}

impl FolderLock {
    /// Creates `dir` if needed and claims it for `what` (a command name used in the message,
    /// e.g. "training"); fails with a one-line error naming the folder and the owner's
    /// process id when another process holds it.
    pub fn acquire(dir: &Path, what: &str) -> Result<FolderLock> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot create the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let owner = fs::read_to_string(&path).unwrap_or_default();
                let owner = owner.trim();
                let by = if owner.is_empty() {
                    String::new()
                } else {
                    format!(" (process {owner})")
                };
                bail!(
                    "{} is in use by another a2fseg process{by}; wait for it to finish or choose \
                     another folder for this {what}",
                    dir.display()
                );
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)
            .and_then(|()| write!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(FolderLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn outputs_get_the_mode_of_a_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours.txt");
        atomic_write_bytes(&ours, b"x").unwrap();
        let plain = dir.path().join("plain.txt");
        fs::write(&plain, b"x").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ours), mode(&plain));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/out.txt");
        atomic_write_bytes(&p, b"one").unwrap();
        atomic_write_bytes(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        let r = atomic_write(&p, |_| anyhow::bail!("boom"));
        assert!(r.is_err());
        assert!(!p.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_write_budget_fails_every_write_after_the_first_n() {
        let unlimited = WriteBudget::new(None);
        assert!((0..10).all(|_| unlimited.spend().is_none()));
        let budget = WriteBudget::new(Some(2));
        assert!(budget.spend().is_none());
        assert!(budget.spend().is_none());
        for _ in 0..3 {
            let e = budget.spend().expect("the third and later writes fail");
            assert_eq!(e.kind(), io::ErrorKind::StorageFull);
            assert!(e.to_string().contains(FAIL_WRITES_AFTER), "{e}");
        }
        assert!(WriteBudget::new(Some(0)).spend().is_some());
    }

    #[test]
    fn an_input_is_never_an_output() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("case_flair.nii.gz");
        fs::write(&input, b"scan").unwrap();
        let other = dir.path().join("seg.nii.gz");
        let err = refuse_overwriting_inputs(&[&input], &[&input]).unwrap_err();
        assert!(format!("{err:#}").contains("case_flair.nii.gz"), "{err:#}");
        // Another spelling of the same file, and a hard link to it.
        let dotted = dir.path().join(".").join("case_flair.nii.gz");
        assert!(refuse_overwriting_inputs(&[&dotted], &[&input]).is_err());
        let link = dir.path().join("link.nii.gz");
        fs::hard_link(&input, &link).unwrap();
        assert!(refuse_overwriting_inputs(&[&link], &[&input]).is_err());
        // A new file, or an existing different one, is fine.
        assert!(refuse_overwriting_inputs(&[&other], &[&input]).is_ok());
        fs::write(&other, b"old labels").unwrap();
        assert!(refuse_overwriting_inputs(&[&other], &[&input]).is_ok());
    }

    #[test]
    fn a_folder_has_one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("eval");
        let first = FolderLock::acquire(&out, "evaluation").unwrap();
        assert_eq!(
            fs::read_to_string(first.path()).unwrap(),
            std::process::id().to_string()
        );
        let err = FolderLock::acquire(&out, "evaluation").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("in use by another a2fseg process"), "{msg}");
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        drop(first);
        // Released with its owner: the folder can be claimed again.
        let again = FolderLock::acquire(&out, "evaluation").unwrap();
        drop(again);
    }
}
