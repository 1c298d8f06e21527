//! How many shards a node runs by default, and on which CPUs: one per CPU of the process's
//! affinity mask (a cpuset, e.g. Kubernetes' static CPU manager), but no more than its cgroup
//! CPU quota allows. A pod with `resources.limits.cpu: 2` on a 64-core node without CPU
//! pinning has a 64-CPU mask and a quota of 2 CPUs' time per period: 64 busy shards would be
//! throttled by the kernel for most of every period, so it gets 2.
//!
//! The quota is read once at start: cgroup v2 `cpu.max`, or cgroup v1
//! `cpu.cfs_quota_us`/`cpu.cfs_period_us`, of the process's cgroup (from `/proc/self/cgroup`)
//! and of every ancestor visible under `/sys/fs/cgroup`, the lowest winning. The reader takes
//! the filesystem root as a parameter so that tests can lay out fake cgroup trees. Nothing
//! here runs on the request path.

use std::path::{Path, PathBuf};

/// A CFS bandwidth limit: `quota_us` of CPU time per `period_us`, over all CPUs together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

impl CpuQuota {
    /// CPUs' worth of time, rounded up: a shard per started CPU, so 1.5 CPUs run 2 shards
    /// (each busy 75% of the time at most) rather than 1 that could never use the half.
    pub fn cpus_ceil(self) -> usize {
        usize::try_from(self.quota_us.div_ceil(self.period_us)).unwrap_or(usize::MAX)
    }

    /// The smaller of two limits, compared as CPU time per unit of time.
    fn min(self, other: CpuQuota) -> CpuQuota {
        // a/b < c/d  ⇔  a·d < c·b, in u128 so no product overflows.
        let lhs = u128::from(self.quota_us) * u128::from(other.period_us);
        let rhs = u128::from(other.quota_us) * u128::from(self.period_us);
        if lhs <= rhs {
            self
        } else {
            other
        }
    }
}

impl std::fmt::Display for CpuQuota {
    /// `150000/100000us (1.50 CPUs)`: the raw numbers and what they mean.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hundredths = u128::from(self.quota_us) * 100 / u128::from(self.period_us);
        write!(
            f,
            "{}/{}us ({}.{:02} CPUs)",
            self.quota_us,
            self.period_us,
            hundredths / 100,
            hundredths % 100
        )
    }
}

/// The CPUs this process may run on (its affinity mask; a container's cpuset).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, usize::from)).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Restricts the calling thread to `cpus` (threads it starts later inherit the mask).
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks nothing, so CPUs beyond the
    // set's size are skipped first; sched_setaffinity reads the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The CPUs left to the coordinator's threads (store writes, lease desk, admin, metrics) when
/// the shards are pinned to the first `shards` CPUs of `allowed`: the rest of the mask, so
/// that the coordinator's work never preempts a shard. `None` when no CPU is left over (the
/// coordinator then floats over the whole mask, as the kernel schedules it).
pub fn coordinator_cpus(allowed: &[usize], shards: usize) -> Option<Vec<usize>> {
    let spare = allowed.get(shards..)?;
    (!spare.is_empty()).then(|| spare.to_vec())
}

/// The number of shards to run: `requested` when it is not 0; otherwise one per CPU of the
/// affinity mask, lowered to the cgroup CPU quota (rounded up, at least 1). The automatic
/// choice is logged with what it was made from.
pub fn shard_count(requested: usize) -> usize {
    if requested != 0 {
        return requested;
    }
    let mask = allowed_cpus().len();
    let quota = cpu_quota(Path::new("/"));
    let shards = default_shards(mask, quota);
    match quota {
        Some(quota) => tracing::info!(
            affinity_cpus = mask,
            cpu_quota = %quota,
            shards,
            "shard count from the affinity mask and the cgroup CPU quota"
        ),
        None => tracing::info!(
            affinity_cpus = mask,
            cpu_quota = "none",
            shards,
            "shard count from the affinity mask (no cgroup CPU quota)"
        ),
    }
    shards
}

/// One shard per CPU of a `mask_cpus`-CPU mask, or per CPU of `quota` when that is lower.
fn default_shards(mask_cpus: usize, quota: Option<CpuQuota>) -> usize {
    let mask = mask_cpus.max(1);
    quota.map_or(mask, |q| q.cpus_ceil().clamp(1, mask))
}

/// The lowest CPU quota on the way from this process's cgroup up to the root of the cgroup
/// filesystem under `root` (`/` outside tests); `None` when there is none or nothing can be
/// read (not Linux, no cgroup filesystem mounted): then the mask alone decides.
pub fn cpu_quota(root: &Path) -> Option<CpuQuota> {
    let own = std::fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    let fs = root.join("sys/fs/cgroup");
    // On a hybrid host the cpu controller lives in the v1 hierarchy while `0::` names a v2
    // group without it, so a v1 cpu line wins.
    if let Some(path) = v1_cpu_path(&own) {
        let mount = fs.join("cpu");
        return lowest(&mount, path, |dir| {
            let quota = read_trimmed(&dir.join("cpu.cfs_quota_us"))?;
            let period = read_trimmed(&dir.join("cpu.cfs_period_us"))?;
            parse_limit(&quota, &period)
        });
    }
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    lowest(&fs, path, |dir| {
        let max = read_trimmed(&dir.join("cpu.max"))?;
        let (quota, period) = max.split_once(' ')?;
        parse_limit(quota, period)
    })
}

/// The v1 hierarchy path of the cpu controller in `/proc/self/cgroup`
/// (`4:cpu,cpuacct:/kubepods/…`).
fn v1_cpu_path(own: &str) -> Option<&str> {
    own.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|c| c == "cpu").then_some(path)
    })
}

/// The lowest limit `read` finds in the group at `path` below `mount` and its ancestors up
/// to `mount`. Without a cgroup namespace a container sees its own group mounted as the
/// root while `/proc/self/cgroup` names the host's path, which does not exist inside; then
/// only the mount's root is read.
fn lowest(mount: &Path, path: &str, read: impl Fn(&Path) -> Option<CpuQuota>) -> Option<CpuQuota> {
    let own = mount.join(path.trim_start_matches('/'));
    let start = if own.is_dir() {
        own
    } else {
        mount.to_path_buf()
    };
    let mut lowest: Option<CpuQuota> = None;
    let mut dir: PathBuf = start;
    loop {
        if let Some(limit) = read(&dir) {
            lowest = Some(lowest.map_or(limit, |l| l.min(limit)));
        }
        if dir == mount || !dir.pop() {
            return lowest;
        }
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    Some(std::fs::read_to_string(path).ok()?.trim().to_owned())
}

/// A quota and a period as the files hold them; `max` (v2) or a negative quota (v1) is no
/// limit.
fn parse_limit(quota: &str, period: &str) -> Option<CpuQuota> {
    let quota_us = quota.parse::<u64>().ok().filter(|&q| q > 0)?;
    let period_us = period.parse::<u64>().ok().filter(|&p| p > 0)?;
    Some(CpuQuota {
        quota_us,
        period_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_takes_the_cpus_the_shards_leave() {
        assert_eq!(coordinator_cpus(&[0, 1, 2, 3], 2), Some(vec![2, 3]));
        assert_eq!(coordinator_cpus(&[4, 6], 1), Some(vec![6]));
        assert_eq!(coordinator_cpus(&[0, 1], 2), None);
        assert_eq!(coordinator_cpus(&[0, 1], 3), None);
    }

    /// A fake filesystem root with the given files, removed on drop.
    struct FakeRoot(PathBuf);

    impl FakeRoot {
        fn new(files: &[(&str, &str)]) -> FakeRoot {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ringgate-cpus-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            for (path, text) in files {
                let file = dir.join(path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(file, text).unwrap();
            }
            std::fs::create_dir_all(&dir).unwrap();
            FakeRoot(dir)
        }

        fn quota(&self) -> Option<CpuQuota> {
            cpu_quota(&self.0)
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn quota(quota_us: u64, period_us: u64) -> Option<CpuQuota> {
        Some(CpuQuota {
            quota_us,
            period_us,
        })
    }

    const POD: &str = "sys/fs/cgroup/kubepods/pod1/c1";

    #[test]
    fn v2_max_is_no_limit() {
        let root = FakeRoot::new(&[
            ("proc/self/cgroup", "0::/kubepods/pod1/c1\n"),
            (&format!("{POD}/cpu.max"), "max 100000\n"),
        ]);
        assert_eq!(root.quota(), None);
        assert_eq!(default_shards(8, root.quota()), 8);
    }

    #[test]
    fn v2_fractional_quota_rounds_up() {
        let root = FakeRoot::new(&[
            ("proc/self/cgroup", "0::/kubepods/pod1/c1\n"),
            (&format!("{POD}/cpu.max"), "150000 100000\n"),
        ]);
        assert_eq!(root.quota(), quota(150_000, 100_000));
        assert_eq!(default_shards(8, root.quota()), 2);
        assert_eq!(
            root.quota().unwrap().to_string(),
            "150000/100000us (1.50 CPUs)"
        );
    }

    #[test]
    fn small_quota_still_runs_one_shard() {
        assert_eq!(default_shards(8, quota(10_000, 100_000)), 1);
    }

    #[test]
    fn quota_above_the_mask_keeps_the_mask() {
        let root = FakeRoot::new(&[
            ("proc/self/cgroup", "0::/kubepods/pod1/c1\n"),
            (&format!("{POD}/cpu.max"), "1600000 100000\n"),
        ]);
        assert_eq!(default_shards(4, root.quota()), 4);
    }

    #[test]
    fn an_ancestor_can_be_lower() {
        // The pod's limit is lower than its container's (or the container has none).
        let root = FakeRoot::new(&[
            ("proc/self/cgroup", "0::/kubepods/pod1/c1\n"),
            (&format!("{POD}/cpu.max"), "max 100000\n"),
            ("sys/fs/cgroup/kubepods/pod1/cpu.max", "300000 100000\n"),
            ("sys/fs/cgroup/kubepods/cpu.max", "400000 50000\n"),
        ]);
        assert_eq!(root.quota(), quota(300_000, 100_000));
        assert_eq!(default_shards(16, root.quota()), 3);
    }

    #[test]
    fn missing_files_mean_no_limit() {
        assert_eq!(FakeRoot::new(&[]).quota(), None);
        let root = FakeRoot::new(&[("proc/self/cgroup", "0::/kubepods/pod1/c1\n")]);
        assert_eq!(root.quota(), None);
        assert_eq!(default_shards(6, root.quota()), 6);
        let garbled = FakeRoot::new(&[
            ("proc/self/cgroup", "0::/\n"),
            ("sys/fs/cgroup/cpu.max", "lots\n"),
        ]);
        assert_eq!(garbled.quota(), None);
    }

    #[test]
    fn namespaced_container_reads_the_mount_root() {
        // With a cgroup namespace (or a host path that does not exist inside the container),
        // the container's own group is the mount's root.
        let root = FakeRoot::new(&[
            ("proc/self/cgroup", "0::/docker/abc\n"),
            ("sys/fs/cgroup/cpu.max", "200000 100000\n"),
        ]);
        assert_eq!(root.quota(), quota(200_000, 100_000));
    }

    #[test]
    fn v1_cfs_quota() {
        let root = FakeRoot::new(&[
            (
                "proc/self/cgroup",
                "12:memory:/kubepods/pod1/c1\n4:cpu,cpuacct:/kubepods/pod1/c1\n0::/\n",
            ),
            (
                "sys/fs/cgroup/cpu/kubepods/pod1/c1/cpu.cfs_quota_us",
                "250000\n",
            ),
            (
                "sys/fs/cgroup/cpu/kubepods/pod1/c1/cpu.cfs_period_us",
                "100000\n",
            ),
            ("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"),
            ("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
            // The v2 group of a hybrid host has no cpu controller; the v1 one decides.
            ("sys/fs/cgroup/cpu.max", "100000 100000\n"),
        ]);
        assert_eq!(root.quota(), quota(250_000, 100_000));
        assert_eq!(default_shards(8, root.quota()), 3);
    }

    #[test]
    fn v1_unlimited() {
        let root = FakeRoot::new(&[
            (
                "proc/self/cgroup",
                "3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n",
            ),
            ("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"),
            ("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
        ]);
        assert_eq!(root.quota(), None);
    }

    #[test]
    fn requested_count_wins() {
        assert_eq!(shard_count(3), 3);
    }

    #[test]
    fn this_machine_has_a_mask() {
        assert!(!allowed_cpus().is_empty());
        assert!(shard_count(0) >= 1);
    }
}
