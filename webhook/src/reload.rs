//! One reload loop for every file the programs follow (the serving certificate, the policy):
//! a [`FileReloader`] loads its files now, refusing bad ones, then polls them and swaps each
//! good new version into an [`ArcSwap`], so readers load the current value without a lock
//! and a bad file never replaces a good value.
//!
//! Files are polled, not watched: the kubelet updates a mounted Secret or ConfigMap by
//! swapping a `..data` symlink, which a watch on the file itself misses. Their bytes are
//! compared with the last attempt's, so an unchanged file (good or bad) is neither reparsed
//! nor re-logged.

use arc_swap::ArcSwap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a look at the files found, as told to the [`FileReloader::on_reload`] hook.
#[derive(Debug)]
pub enum Reload<'a, T> {
    /// New contents parsed; `value` is in force from now on.
    Loaded {
        /// The new value.
        value: &'a T,
        /// The value it replaced.
        previous: &'a T,
        /// The files.
        paths: &'a [PathBuf],
        /// The bytes of each file, in the order of `paths`.
        contents: &'a [Vec<u8>],
    },
    /// New contents that cannot be used; the last good value stays in force.
    Rejected,
    /// A file cannot be read; the last good value stays in force. Told once per failing
    /// streak, not on every poll.
    Unreadable,
}

type Parse<T> = Box<dyn Fn(&[Vec<u8>]) -> anyhow::Result<T> + Send + Sync>;
type Hook<T> = Box<dyn FnMut(Reload<'_, T>) + Send>;

/// Follows a set of files and keeps the value made of them fresh.
pub struct FileReloader<T> {
    /// What the files hold, for messages: "policy file", "serving certificate".
    what: &'static str,
    paths: Vec<PathBuf>,
    parse: Parse<T>,
    current: Arc<ArcSwap<T>>,
    /// Contents of the last attempt (good or bad).
    last: Vec<Vec<u8>>,
    /// Whether the current read failure was told already.
    read_failing: bool,
    hook: Option<Hook<T>>,
}

impl<T> std::fmt::Debug for FileReloader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReloader")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .field("read_failing", &self.read_failing)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> FileReloader<T> {
    /// Reads `paths` and parses their contents now. A missing or bad file is an error: a
    /// program refuses to start rather than run with a value nobody wrote.
    pub async fn load(
        what: &'static str,
        paths: Vec<PathBuf>,
        parse: impl Fn(&[Vec<u8>]) -> anyhow::Result<T> + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let contents = match read_all(&paths).await {
            Ok(contents) => contents,
            Err((path, e)) => {
                anyhow::bail!("cannot read the {what} {}: {e}", path.display())
            }
        };
        let value = parse(&contents)?;
        Ok(FileReloader {
            what,
            paths,
            parse: Box::new(parse),
            current: Arc::new(ArcSwap::from_pointee(value)),
            last: contents,
            read_failing: false,
            hook: None,
        })
    }

    /// A reloader of no file: `value` stays in force for ever (a program run without the
    /// file, on its built-in value).
    pub fn fixed(what: &'static str, value: T) -> Self {
        FileReloader {
            what,
            paths: Vec::new(),
            parse: Box::new(|_| anyhow::bail!("a fixed value is never reparsed")),
            current: Arc::new(ArcSwap::from_pointee(value)),
            last: Vec::new(),
            read_failing: false,
            hook: None,
        }
    }

    /// Tells `hook` what every look that found something new found (metrics, logs of a
    /// good reload, a "changed" signal). Failures are logged here already.
    pub fn on_reload(mut self, hook: impl FnMut(Reload<'_, T>) + Send + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// The value in force, updated by every good reload (share it with the readers).
    pub fn current(&self) -> Arc<ArcSwap<T>> {
        self.current.clone()
    }

    /// The files followed (none for [`FileReloader::fixed`]).
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    fn tell(hook: &mut Option<Hook<T>>, event: Reload<'_, T>) {
        if let Some(hook) = hook.as_mut() {
            hook(event);
        }
    }

    /// Rereads the files once. Returns whether a new value is now in force.
    pub async fn check(&mut self) -> bool {
        if self.paths.is_empty() {
            return false;
        }
        let contents = match read_all(&self.paths).await {
            Ok(contents) => {
                self.read_failing = false;
                contents
            }
            Err((path, e)) => {
                // A file missing for a moment (a Secret being updated) is common: keep the
                // value in force, retry, and say so once rather than on every poll.
                if !self.read_failing {
                    self.read_failing = true;
                    tracing::warn!(path = %path.display(), error = %e,
                        "cannot reread the {}; keeping the last good one", self.what);
                    Self::tell(&mut self.hook, Reload::Unreadable);
                }
                return false;
            }
        };
        if contents == self.last {
            return false;
        }
        match (self.parse)(&contents) {
            Ok(value) => {
                let value = Arc::new(value);
                let previous = self.current.swap(value.clone());
                Self::tell(
                    &mut self.hook,
                    Reload::Loaded {
                        value: &value,
                        previous: &previous,
                        paths: &self.paths,
                        contents: &contents,
                    },
                );
                self.last = contents;
                true
            }
            Err(e) => {
                self.last = contents;
                tracing::error!(path = %self.files(), error = format!("{e:#}"),
                    "the new {} is unusable; keeping the last good one", self.what);
                Self::tell(&mut self.hook, Reload::Rejected);
                false
            }
        }
    }

    /// The paths, for logs.
    fn files(&self) -> String {
        let paths: Vec<_> = self.paths.iter().map(|p| p.display().to_string()).collect();
        paths.join(", ")
    }

    /// Rereads the files every `interval` until `shutdown` resolves (at once for
    /// [`FileReloader::fixed`]).
    pub async fn run(mut self, interval: Duration, shutdown: impl Future<Output = ()> + Send) {
        if self.paths.is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            self.check().await;
        }
    }
}

/// The bytes of every file, or the first that cannot be read.
async fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, (&PathBuf, std::io::Error)> {
    let mut contents = Vec::with_capacity(paths.len());
    for path in paths {
        contents.push(tokio::fs::read(path).await.map_err(|e| (path, e))?);
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A reloader of one file holding a number; the hook's reports land in the returned log.
    async fn numbers(
        path: PathBuf,
    ) -> anyhow::Result<(FileReloader<u32>, Arc<Mutex<Vec<String>>>)> {
        let told = Arc::new(Mutex::new(Vec::new()));
        let log = told.clone();
        let reloader = FileReloader::load("number file", vec![path], |contents| {
            let text = std::str::from_utf8(&contents[0])?;
            Ok(text.trim().parse::<u32>()?)
        })
        .await?
        .on_reload(move |event| {
            let line = match event {
                Reload::Loaded {
                    value, previous, ..
                } => format!("loaded {previous} -> {value}"),
                Reload::Rejected => "rejected".to_owned(),
                Reload::Unreadable => "unreadable".to_owned(),
            };
            log.lock().unwrap().push(line);
        });
        Ok((reloader, told))
    }

    #[tokio::test]
    async fn a_bad_or_missing_file_refuses_to_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        let err = numbers(path.clone()).await.unwrap_err();
        assert!(
            format!("{err:#}").starts_with("cannot read the number file"),
            "{err:#}"
        );
        assert!(format!("{err:#}").contains("/n"), "{err:#}");
        std::fs::write(&path, "many").unwrap();
        let err = numbers(path).await.unwrap_err();
        assert!(format!("{err:#}").contains("invalid digit"), "{err:#}");
    }

    #[tokio::test]
    async fn good_changes_are_swapped_in_and_bad_ones_keep_the_last_good_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "1").unwrap();
        let (mut reloader, told) = numbers(path.clone()).await.unwrap();
        let current = reloader.current();
        assert_eq!(**current.load(), 1);

        // Unchanged: nothing to tell.
        assert!(!reloader.check().await);
        std::fs::write(&path, "2").unwrap();
        assert!(reloader.check().await);
        assert_eq!(**current.load(), 2);

        // Bad: kept, told once, and not again while the file stays the same.
        std::fs::write(&path, "two").unwrap();
        assert!(!reloader.check().await);
        assert!(!reloader.check().await);
        assert_eq!(**current.load(), 2);

        // Gone: kept, told once per failing streak.
        std::fs::remove_file(&path).unwrap();
        assert!(!reloader.check().await);
        assert!(!reloader.check().await);
        std::fs::write(&path, "3").unwrap();
        assert!(reloader.check().await);
        std::fs::remove_file(&path).unwrap();
        assert!(!reloader.check().await);
        assert_eq!(**current.load(), 3);

        assert_eq!(
            *told.lock().unwrap(),
            [
                "loaded 1 -> 2",
                "rejected",
                "unreadable",
                "loaded 2 -> 3",
                "unreadable"
            ]
        );
    }

    #[tokio::test]
    async fn run_polls_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "1").unwrap();
        let (reloader, _told) = numbers(path.clone()).await.unwrap();
        let current = reloader.current();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(reloader.run(Duration::from_millis(10), async move {
            let _ = stopped.await;
        }));
        std::fs::write(&path, "5").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while **current.load() != 5 {
            assert!(tokio::time::Instant::now() < deadline, "not reloaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stops on shutdown")
            .unwrap();
    }

    #[tokio::test]
    async fn a_fixed_value_never_changes() {
        let mut fixed = FileReloader::fixed("number", 7u32);
        assert!(!fixed.check().await);
        assert!(fixed.paths().is_empty());
        let current = fixed.current();
        // Returns at once: there is nothing to poll.
        tokio::time::timeout(
            Duration::from_secs(10),
            fixed.run(Duration::from_millis(1), std::future::pending()),
        )
        .await
        .expect("returns at once");
        assert_eq!(**current.load(), 7);
    }
}
