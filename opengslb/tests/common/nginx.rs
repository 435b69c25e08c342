//! A real nginx serving `/health` on one address, started from a directory of its own and killed on
//! drop (also when the test fails); single-process (`master_process off`), so nothing is left behind.

use std::{
    net::SocketAddr,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// One nginx instance.
pub struct Nginx {
    child: Option<Child>,
    conf: PathBuf,
    netns: Option<std::fs::File>,
}

impl Nginx {
    /// Starts nginx on `listen` with its files under `dir`, inside the network namespace `netns` (a
    /// `/run/netns/<name>` file) if given.
    pub fn start(dir: &Path, listen: SocketAddr, netns: Option<&str>) -> Self {
        std::fs::create_dir_all(dir).expect("nginx dir");
        let d = dir.display();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "master_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
                 server {{ listen {listen}; location = /health {{ return 200; }} location / {{ return 404; }} }} }}\n"
            ),
        )
        .expect("nginx.conf");
        let netns = netns.map(|n| std::fs::File::open(format!("/run/netns/{n}")).expect("netns"));
        let mut n = Self {
            child: None,
            conf,
            netns,
        };
        n.resume();
        n
    }

    /// Starts it again after [`Nginx::stop`].
    pub fn resume(&mut self) {
        use std::os::fd::AsRawFd as _;
        let mut cmd = Command::new(binary());
        cmd.arg("-p")
            .arg(self.conf.parent().unwrap_or(Path::new("/")))
            .arg("-c")
            .arg(&self.conf)
            .args(["-e", "stderr", "-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let ns = self.netns.as_ref().map(|f| f.as_raw_fd());
        // SAFETY: setns and prctl are async-signal-safe; the fd outlives the spawn.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(fd) = ns
                    && libc::setns(fd, libc::CLONE_NEWNET) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("start nginx"));
    }

    /// Kills it (the backend goes away: connections are refused from now on).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn binary() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/nginx");
    assert!(
        sbin.exists(),
        "nginx not found: `cargo xtask setup` installs nginx-light"
    );
    sbin
}
