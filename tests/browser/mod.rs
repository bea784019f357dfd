//! A headless Chromium driven through the DevTools protocol over a pipe (`--remote-debugging-
//! pipe`: JSON messages separated by NUL bytes on file descriptors 3 and 4, as Puppeteer's pipe
//! transport does). The tests need five commands, so they are spoken here rather than through a
//! client crate that generates the whole protocol at build time.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

pub struct Browser {
    child: Child,
    to: File,
    from: BufReader<File>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

/// Debian's Chromium, which `scripts/setup.sh` installs.
fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("no Chromium at /usr/bin/chromium: run scripts/setup.sh (it installs Debian's chromium)")
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

impl Browser {
    /// A new headless browser with one page of `width` x `height` CSS pixels. `offline`: every
    /// connection goes to a proxy that is not there, so nothing can be fetched.
    pub fn launch(width: u32, height: u32, offline: bool) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (commands_read, commands_write) = pipe();
        let (replies_read, replies_write) = pipe();
        let mut command = Command::new(chromium());
        command
            .args([
                "--headless",
                "--remote-debugging-pipe",
                // Tests run as root in CI, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--mute-audio",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()));
        if offline {
            command.args([
                "--proxy-server=127.0.0.1:9",
                "--proxy-bypass-list=<-loopback>",
            ]);
        }
        command
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(profile.path().join("chromium.log")).unwrap());
        // SAFETY: only async-signal-safe calls between fork and exec. The descriptors are
        // first copied above 10 so that neither is overwritten by the other's dup2.
        unsafe {
            command.pre_exec(move || {
                let read = libc::fcntl(commands_read, libc::F_DUPFD, 10);
                let write = libc::fcntl(replies_write, libc::F_DUPFD, 10);
                if read < 0 || write < 0 || libc::dup2(read, 3) < 0 || libc::dup2(write, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("Chromium starts");
        // SAFETY: each descriptor came from pipe2 above and is owned by exactly one File.
        let (to, from) = unsafe {
            drop(File::from_raw_fd(commands_read));
            drop(File::from_raw_fd(replies_write));
            (
                File::from_raw_fd(commands_write),
                File::from_raw_fd(replies_read),
            )
        };
        let mut browser = Browser {
            child,
            to,
            from: BufReader::new(from),
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser
    }

    /// One command and its result; events that arrive meanwhile are passed over.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("Chromium reads its pipe");
        loop {
            let mut reply = Vec::new();
            let read = self.from.read_until(0, &mut reply).unwrap();
            assert!(read > 0, "Chromium closed its pipe (during {method})");
            reply.pop();
            let reply: Value = serde_json::from_slice(&reply).unwrap();
            if reply["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(error) = reply.get("error") {
                panic!("{method}: {error}");
            }
            return reply["result"].clone();
        }
    }

    fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// Opens `url` and waits until the document has loaded.
    pub fn open(&mut self, url: &str) {
        let answer = self.page("Page.navigate", json!({"url": url}));
        assert!(answer.get("errorText").is_none(), "{url}: {answer}");
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
            || {},
        );
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, expression: &str) -> Value {
        let answer = self.page(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Waits until `condition` is true in the page, doing `meanwhile` between looks; returns how
    /// long that took. Fails with the page's state after `limit`.
    pub fn wait_for(
        &mut self,
        condition: &str,
        limit: Duration,
        mut meanwhile: impl FnMut(),
    ) -> Duration {
        let start = Instant::now();
        loop {
            if self.eval(condition) == json!(true) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "not true after {limit:?}: {condition}\nthe page says: {}",
                self.eval("document.body ? document.body.innerText.slice(0, 2000) : ''")
            );
            meanwhile();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the page as shown, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.page("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
