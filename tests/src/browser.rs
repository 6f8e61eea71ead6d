//! A real browser for the console's tests and bench: Debian's Chromium (installed by
//! `scripts/install-chromium.sh`, or the one `FERRY_CHROMIUM` names), driven over the
//! DevTools protocol: open a page, click and type as a user does, wait for what the page
//! shows, save screenshots.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use headless_chrome::protocol::cdp::Emulation;
use headless_chrome::protocol::cdp::Page as Cdp;
use headless_chrome::{LaunchOptions, Tab};
use serde::de::DeserializeOwned;

/// The Chromium binary: `FERRY_CHROMIUM`, or Debian's.
pub fn chromium() -> Result<PathBuf> {
    let path = std::env::var_os("FERRY_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !path.exists() {
        bail!(
            "{} not found: run scripts/install-chromium.sh (or set FERRY_CHROMIUM)",
            path.display()
        );
    }
    Ok(path)
}

/// A headless Chromium with its own profile.
pub struct Browser {
    browser: headless_chrome::Browser,
    _profile: tempfile::TempDir,
}

/// One tab.
pub struct Page {
    tab: Arc<Tab>,
}

/// How long a step waits for the page by default.
pub const STEP: Duration = Duration::from_secs(30);

impl Browser {
    /// Starts Chromium with a `width`×`height` window and a profile under `dir`.
    pub fn launch(dir: &Path, width: u32, height: u32) -> Result<Browser> {
        let profile = tempfile::tempdir_in(dir)?;
        let args: Vec<&OsStr> = [
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ]
        .iter()
        .map(OsStr::new)
        .collect();
        let options = LaunchOptions {
            headless: true,
            sandbox: false,
            path: Some(chromium()?),
            window_size: Some((width, height)),
            user_data_dir: Some(profile.path().to_owned()),
            idle_browser_timeout: Duration::from_secs(600),
            args,
            ..LaunchOptions::default()
        };
        let browser = headless_chrome::Browser::new(options)
            .map_err(|e| anyhow::anyhow!("cannot start chromium: {e}"))?;
        Ok(Browser {
            browser,
            _profile: profile,
        })
    }

    /// A new tab at `url`.
    pub fn open(&self, url: &str) -> Result<Page> {
        let tab = self
            .browser
            .new_tab()
            .map_err(|e| anyhow::anyhow!("new tab: {e}"))?;
        tab.set_default_timeout(STEP);
        let page = Page { tab };
        page.goto(url)?;
        Ok(page)
    }
}

impl Page {
    /// Navigates to `url` and waits for it to load.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.tab
            .navigate_to(url)
            .and_then(|t| t.wait_until_navigated())
            .map_err(|e| anyhow::anyhow!("opening {url}: {e}"))?;
        Ok(())
    }

    /// Opens the console's `route` (`/rollouts/x`) as a link in the page would (the address's
    /// fragment changes, the page stays loaded), then waits for `ready` (a selector).
    pub fn show(&self, route: &str, ready: &str) -> Result<()> {
        self.eval::<bool>(&format!(
            "(() => {{ location.hash = {}; return true; }})()",
            serde_json::to_string(route)?
        ))?;
        self.wait_for_element(ready)
    }

    /// The value of a JavaScript expression (awaited when it is a promise), through JSON.
    pub fn eval<T: DeserializeOwned>(&self, expression: &str) -> Result<T> {
        let wrapped = format!("(async () => JSON.stringify(await ({expression})))()");
        let result = self
            .tab
            .evaluate(&wrapped, true)
            .map_err(|e| anyhow::anyhow!("evaluating {expression}: {e}"))?;
        let text = result
            .value
            .as_ref()
            .and_then(|v| v.as_str())
            .with_context(|| format!("{expression} gave no value: {result:?}"))?;
        serde_json::from_str(text).with_context(|| format!("{expression} gave {text}"))
    }

    /// Waits until the expression is true, up to `timeout`; names `what` when it is not.
    pub fn wait_for(&self, what: &str, expression: &str, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            if self
                .eval::<bool>(&format!("!!({expression})"))
                .unwrap_or(false)
            {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                let shown: String = self
                    .eval("document.body.innerText.slice(0, 3000)")
                    .unwrap_or_default();
                bail!("waited {timeout:?} for {what} ({expression}); the page shows:\n{shown}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for an element matching `selector`, up to [`STEP`].
    pub fn wait_for_element(&self, selector: &str) -> Result<()> {
        let query = serde_json::to_string(selector)?;
        self.wait_for(selector, &format!("document.querySelector({query})"), STEP)?;
        Ok(())
    }

    /// Clicks the element matching `selector` as a user does (a mouse click at its centre).
    /// A live page may re-render between finding the element and clicking it: the click is
    /// tried again on the new element, up to [`STEP`].
    pub fn click(&self, selector: &str) -> Result<()> {
        let start = Instant::now();
        loop {
            self.wait_for_element(selector)?;
            match self
                .tab
                .find_element(selector)
                .and_then(|e| e.click().map(|_| ()))
            {
                Ok(()) => return Ok(()),
                Err(e) if start.elapsed() > STEP => bail!("clicking {selector}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Presses the mouse on the centre of the element matching `selector`, holds it for
    /// `hold` (a slow hand), and releases it there: whether the page took the click is for
    /// the caller to check.
    pub fn slow_click(&self, selector: &str, hold: Duration) -> Result<()> {
        use headless_chrome::protocol::cdp::Input::{
            DispatchMouseEvent, DispatchMouseEventTypeOption as Kind, MouseButton,
        };
        self.wait_for_element(selector)?;
        let query = serde_json::to_string(selector)?;
        let (x, y): (f64, f64) = self.eval(&format!(
            "(() => {{ const e = document.querySelector({query}); e.scrollIntoView({{ block: 'center' }}); const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        ))?;
        let event = |kind: Kind| DispatchMouseEvent {
            button: match kind {
                Kind::MouseMoved => None,
                _ => Some(MouseButton::Left),
            },
            Type: kind,
            x,
            y,
            click_count: Some(1),
            modifiers: None,
            timestamp: None,
            buttons: None,
            force: None,
            tangential_pressure: None,
            tilt_x: None,
            tilt_y: None,
            twist: None,
            delta_x: None,
            delta_y: None,
            pointer_Type: None,
        };
        self.tab.call_method(event(Kind::MouseMoved))?;
        self.tab.call_method(event(Kind::MousePressed))?;
        std::thread::sleep(hold);
        self.tab.call_method(event(Kind::MouseReleased))?;
        Ok(())
    }

    /// Follows the link matching `selector` by clicking it, then waits for `ready` (a
    /// selector) on the page it opens. A click that lands while a live page swaps its content
    /// may miss; the link is clicked again (as a user would) until the address is the link's.
    pub fn follow(&self, selector: &str, ready: &str) -> Result<()> {
        let query = serde_json::to_string(selector)?;
        self.wait_for_element(selector)?;
        let href: String = self.eval(&format!(
            "document.querySelector({query}).getAttribute('href')"
        ))?;
        let arrived = format!("location.hash === {}", serde_json::to_string(&href)?);
        let start = Instant::now();
        loop {
            self.click(selector)?;
            if self
                .wait_for(&format!("{href} to open"), &arrived, Duration::from_secs(3))
                .is_ok()
            {
                break;
            }
            if start.elapsed() > STEP {
                bail!("clicking {selector} never opened {href}");
            }
        }
        self.wait_for_element(ready)
    }

    /// Types `text` into the field matching `selector`, replacing what it held.
    pub fn fill(&self, selector: &str, text: &str) -> Result<()> {
        self.wait_for_element(selector)?;
        let query = serde_json::to_string(selector)?;
        self.eval::<bool>(&format!(
            "(() => {{ const e = document.querySelector({query}); e.focus(); e.select && e.select(); e.value = ''; return true; }})()"
        ))?;
        // Inserted as one input, as a paste or an input method does: typed key by key (two
        // round trips to Chromium a character), a token took seconds and the story minutes.
        self.tab
            .send_character(text)
            .map_err(|e| anyhow::anyhow!("typing into {selector}: {e}"))?;
        Ok(())
    }

    /// Presses a key (`Tab`, `Enter`, `Escape`) on what has the focus.
    pub fn press(&self, key: &str) -> Result<()> {
        self.tab
            .press_key(key)
            .map_err(|e| anyhow::anyhow!("pressing {key}: {e}"))?;
        Ok(())
    }

    /// The text of the first element matching `selector`.
    pub fn text(&self, selector: &str) -> Result<String> {
        self.wait_for_element(selector)?;
        let query = serde_json::to_string(selector)?;
        self.eval(&format!("document.querySelector({query}).innerText"))
    }

    /// Whether an element matches `selector` now.
    pub fn has(&self, selector: &str) -> Result<bool> {
        let query = serde_json::to_string(selector)?;
        self.eval(&format!("document.querySelector({query}) !== null"))
    }

    /// Shows the page as a `width`×`height` screen would, in dark mode when `dark`.
    pub fn emulate(&self, width: u32, height: u32, dark: bool) -> Result<()> {
        self.tab
            .call_method(Emulation::SetDeviceMetricsOverride {
                width,
                height,
                device_scale_factor: 1.0,
                mobile: false,
                scale: None,
                screen_width: None,
                screen_height: None,
                position_x: None,
                position_y: None,
                dont_set_visible_size: None,
                screen_orientation: None,
                viewport: None,
                display_feature: None,
                device_posture: None,
            })
            .map_err(|e| anyhow::anyhow!("emulating {width}x{height}: {e}"))?;
        self.tab
            .call_method(Emulation::SetEmulatedMedia {
                media: None,
                features: Some(vec![Emulation::MediaFeature {
                    name: "prefers-color-scheme".into(),
                    value: if dark { "dark" } else { "light" }.into(),
                }]),
            })
            .map_err(|e| anyhow::anyhow!("emulating the colour scheme: {e}"))?;
        Ok(())
    }

    /// Saves the whole page as a PNG in `dir` named `name.png`.
    pub fn screenshot(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let (width, height): (f64, f64) = self.eval(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]",
        )?;
        let shot = self
            .tab
            .call_method(Cdp::CaptureScreenshot {
                format: Some(Cdp::CaptureScreenshotFormatOption::Png),
                quality: None,
                clip: Some(Cdp::Viewport {
                    x: 0.0,
                    y: 0.0,
                    width,
                    height,
                    scale: 1.0,
                }),
                from_surface: Some(true),
                capture_beyond_viewport: Some(true),
                optimize_for_speed: None,
            })
            .map_err(|e| anyhow::anyhow!("screenshot {name}: {e}"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&shot.data)
            .context("the screenshot is not base64")?;
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes)?;
        Ok(path)
    }
}
