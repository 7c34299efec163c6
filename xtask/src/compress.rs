//! Precompression of the built assets and their size report. The relay serves `X.gz` / `X.br`
//! when they sit next to `X`, so every text or wasm asset in `dist/` gets both, at the strongest
//! settings (done once at build time, read many times), and the budgets the loader and the
//! panel must stay within.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};

/// File extensions worth compressing (everything else in `dist/` is left alone).
const COMPRESSIBLE: &[&str] = &["js", "wasm", "html", "css"];

/// Writes `X.gz` and `X.br` for every compressible `X` under `dir`, skipping files whose
/// compressed copies are already newer than them; deletes `.gz`/`.br` whose source is gone.
/// Returns how many files were (re)compressed.
pub fn precompress_tree(dir: &Path) -> Result<usize> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let mut done = 0;
    for path in files {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "gz" || ext == "br" {
            let source = path.with_extension("");
            if !source.exists() {
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
            continue;
        }
        if !COMPRESSIBLE.contains(&ext) {
            continue;
        }
        let gz = sibling(&path, "gz");
        let br = sibling(&path, "br");
        let source_time = modified(&path)?;
        let fresh = |p: &Path| modified(p).is_ok_and(|t| t >= source_time);
        if fresh(&gz) && fresh(&br) {
            continue;
        }
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        fs::write(&gz, gzip(&data)?).with_context(|| format!("writing {}", gz.display()))?;
        fs::write(&br, brotli(&data)?).with_context(|| format!("writing {}", br.display()))?;
        done += 1;
    }
    Ok(done)
}

/// `path` with `.ext` appended (`panel.js` → `panel.js.gz`).
pub fn sibling(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

fn modified(path: &Path) -> Result<SystemTime> {
    Ok(fs::metadata(path)?.modified()?)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// gzip at level 9.
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

/// brotli at quality 11 with the largest standard window (22).
fn brotli(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = brotli::CompressorWriter::new(&mut out, 64 * 1024, 11, 22);
        enc.write_all(data)?;
        enc.flush()?;
    }
    Ok(out)
}

/// Raw and compressed byte counts of one file or a group of files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    /// Bytes on disk as built.
    pub raw: u64,
    /// Bytes of the `.gz` copy (what most browsers download without brotli).
    pub gzip: u64,
    /// Bytes of the `.br` copy (what browsers download over HTTPS with brotli).
    pub brotli: u64,
}

impl Sizes {
    /// Sizes of `path` and its precompressed siblings (0 for a missing one).
    pub fn of(path: &Path) -> Sizes {
        let len = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Sizes {
            raw: len(path),
            gzip: len(&sibling(path, "gz")),
            brotli: len(&sibling(path, "br")),
        }
    }

    /// The sum of two groups.
    pub fn plus(self, other: Sizes) -> Sizes {
        Sizes {
            raw: self.raw + other.raw,
            gzip: self.gzip + other.gzip,
            brotli: self.brotli + other.brotli,
        }
    }

    fn json(&self) -> String {
        format!(
            "{{\"raw\": {}, \"gzip\": {}, \"brotli\": {}}}",
            self.raw, self.gzip, self.brotli
        )
    }
}

/// One bundle in the report: a name and the files it is made of (paths relative to `dist/`).
pub struct Group {
    /// Name shown in the table and used as the key in `sizes.json`.
    pub name: &'static str,
    /// Files, relative to `dist/` (with `/` separators: they are also JSON keys).
    pub files: Vec<String>,
    /// Most brotli bytes the group may weigh, for the bundles whose weight is a promise to site
    /// owners (BENCHMARKS.md "Bundle sizes"); `cargo xtask test` fails past it.
    pub budget: Option<u64>,
}

/// Fails, naming each bundle, when any group with a budget weighs more brotli bytes than it.
/// Reads the `.br` copies the build wrote, so it costs no compression.
pub fn check_budgets(dist: &Path, groups: &[Group]) -> Result<()> {
    let mut over = Vec::new();
    for group in groups {
        let Some(budget) = group.budget else {
            continue;
        };
        let brotli: u64 = group
            .files
            .iter()
            .map(|f| Sizes::of(&dist.join(f)).brotli)
            .sum();
        if brotli == 0 {
            over.push(format!("{}: not built (no .br files)", group.name));
        } else if brotli > budget {
            over.push(format!(
                "{}: {brotli} B brotli, over its budget of {budget} B by {} B",
                group.name,
                brotli - budget
            ));
        } else {
            println!(
                "{}: {brotli} B brotli, within its budget of {budget} B",
                group.name
            );
        }
    }
    if !over.is_empty() {
        anyhow::bail!("bundles over budget: {}", over.join("; "));
    }
    Ok(())
}

/// Prints the size table and writes `dist/sizes.json` (cited by BENCHMARKS.md).
pub fn report(dist: &Path, groups: &[Group], profile: &str) -> Result<()> {
    // Bytes exactly (what sizes.json holds) and KiB for the eye.
    let kib = |b: u64| format!("{b} ({:.1}K)", b as f64 / 1024.0);
    println!(
        "\n{:<34} {:>16} {:>16} {:>16}",
        "bundle / file", "raw", "gzip", "brotli"
    );
    let mut json_groups = Vec::new();
    for group in groups {
        let mut total = Sizes::default();
        let mut json_files = Vec::new();
        for file in &group.files {
            let s = Sizes::of(&dist.join(file));
            println!(
                "  {:<32} {:>16} {:>16} {:>16}",
                file,
                kib(s.raw),
                kib(s.gzip),
                kib(s.brotli)
            );
            total = total.plus(s);
            json_files.push(format!("      \"{file}\": {}", s.json()));
        }
        println!(
            "{:<34} {:>16} {:>16} {:>16}",
            format!("{} (total)", group.name),
            kib(total.raw),
            kib(total.gzip),
            kib(total.brotli)
        );
        let budget = group
            .budget
            .map(|b| format!(", \"budget_brotli\": {b}"))
            .unwrap_or_default();
        json_groups.push(format!(
            "  \"{}\": {{\n    \"raw\": {}, \"gzip\": {}, \"brotli\": {}{budget},\n    \"files\": {{\n{}\n    }}\n  }}",
            group.name,
            total.raw,
            total.gzip,
            total.brotli,
            json_files.join(",\n")
        ));
    }
    let json = format!(
        "{{\n  \"profile\": \"{profile}\",\n  \"command\": \"cargo xtask build\",\n{}\n}}\n",
        json_groups.join(",\n")
    );
    let path = dist.join("sizes.json");
    fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    println!("\nsizes written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `dist/` of its own under the system temp directory, removed on drop.
    struct Dist(PathBuf);

    impl Dist {
        fn new(name: &str) -> Dist {
            let dir =
                std::env::temp_dir().join(format!("parley-xtask-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("temp dir");
            Dist(dir)
        }

        /// Writes `file` and a `.br` copy of `brotli` bytes beside it.
        fn file(&self, file: &str, brotli: usize) {
            fs::write(self.0.join(file), b"x").expect("file");
            fs::write(sibling(&self.0.join(file), "br"), vec![0u8; brotli]).expect("br");
        }
    }

    impl Drop for Dist {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn group(files: &[&str], budget: u64) -> Group {
        Group {
            name: "panel",
            files: files.iter().map(|f| (*f).to_owned()).collect(),
            budget: Some(budget),
        }
    }

    #[test]
    fn a_group_at_its_budget_passes_and_one_byte_over_fails_naming_it() {
        let dist = Dist::new("budget");
        dist.file("a.js", 600);
        dist.file("a.wasm", 400);
        assert!(check_budgets(&dist.0, &[group(&["a.js", "a.wasm"], 1000)]).is_ok());
        let err = check_budgets(&dist.0, &[group(&["a.js", "a.wasm"], 999)])
            .expect_err("1,000 B against a budget of 999 B");
        let text = format!("{err:#}");
        assert!(text.contains("panel: 1000 B brotli"), "{text}");
        assert!(text.contains("by 1 B"), "{text}");
    }

    #[test]
    fn a_bundle_that_was_not_built_fails_rather_than_weighing_nothing() {
        let dist = Dist::new("missing");
        let err = check_budgets(&dist.0, &[group(&["gone.wasm"], 1000)])
            .expect_err("no .br file is not a pass");
        assert!(format!("{err:#}").contains("not built"));
    }

    #[test]
    fn groups_without_a_budget_are_not_checked() {
        let dist = Dist::new("nobudget");
        dist.file("big.wasm", 10_000);
        let console = Group {
            name: "console",
            files: vec!["big.wasm".into()],
            budget: None,
        };
        assert!(check_budgets(&dist.0, &[console]).is_ok());
    }
}
