"""Drives a viewer page (src/report/viewer.rs) in headless Chromium from file:// and checks
what a user sees. Run by tests/viewer_browser.rs:

    python3 viewer_browser.py CHROMIUM PAGE.html SPEC.json

SPEC: {"dims": [x, y, z] of the cropped volumes, "tumour": [[x0, y0, z0], [x1, y1, z1]]
(inclusive voxel box of the tumour on the case's full grid) or null (no screenshot check,
e.g. for an untrained model's predictions), "switch": {"subset": i, "gone": "blue"} or null,
"selections" (optional): [{"method": i, "subset": j, "attention": k (0: none), "volumes":
[names of the volumes then shown], "caption": [texts the score table's caption holds]}]}.
Prints one JSON object of what was measured; exits non-zero with a message on the first
failed check.
"""

import io
import json
import sys

from PIL import Image
from playwright.sync_api import sync_playwright

chromium, page_path, spec_path = sys.argv[1:4]
spec = json.load(open(spec_path))


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def colour_counts(png, box, margin):
    """Overlay-coloured pixels (one channel at least 60 above both others) of a screenshot of
    the canvas inside the box (x0, y0, x1, y1, canvas pixels) grown by `margin`, and
    outside it."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    inside = {"red": 0, "green": 0, "blue": 0}
    outside = 0
    x0, y0, x1, y1 = box
    for (r, g, b), (x, y) in zip(img.getdata(), ((x, y) for y in range(img.height) for x in range(img.width))):
        name = None
        if r > max(g, b) + 60:
            name = "red"
        elif g > max(r, b) + 60:
            name = "green"
        elif b > max(r, g) + 60:
            name = "blue"
        if name is None:
            continue
        if x0 - margin <= x <= x1 + margin and y0 - margin <= y <= y1 + margin:
            inside[name] += 1
        else:
            outside += 1
    return inside, outside


def select(page, control, value):
    page.eval_on_selector(
        f'section.a2f-viewer [data-control="{control}"]',
        "(el, v) => { el.value = v; el.dispatchEvent(new Event(el.type === 'range' ? 'input' : 'change')); }",
        value,
    )
    # show() is async (decoding a volume): wait until the viewer drew the new selection.
    page.wait_for_timeout(300)
    page.evaluate("() => document.querySelector('section.a2f-viewer').a2fViewer.nv.drawScene()")


def tumour_checks(page, out, label_name):
    """Overlay colours where the tumour is and none far from it, before and after the
    subset switch of spec["switch"]."""
    # One axial slice through the tumour's centre, overlay opaque.
    select(page, "view", "axial")
    select(page, "opacity", "1")
    crop_start = page.evaluate(
        "() => JSON.parse(document.querySelector('section.a2f-viewer script.a2f-data').textContent).crop_start"
    )
    (a0, a1) = spec["tumour"]
    lo = [a0[i] - crop_start[i] for i in range(3)]
    hi = [a1[i] - crop_start[i] for i in range(3)]
    centre = [(lo[i] + hi[i]) / 2 for i in range(3)]

    def canvas_box():
        """The tumour box's corners on the canvas (voxel corners ±0.5), and one voxel's size."""
        return page.evaluate(
            """([lo, hi, centre]) => {
                const section = document.querySelector('section.a2f-viewer');
                const nv = section.a2fViewer.nv;
                nv.scene.crosshairPos = nv.vox2frac(centre);
                nv.opts.crosshairWidth = 0;
                nv.drawScene();
                const dpr = (nv.uiData && nv.uiData.dpr) || 1;
                const xs = [], ys = [];
                for (const x of [lo[0] - 0.5, hi[0] + 0.5])
                    for (const y of [lo[1] - 0.5, hi[1] + 0.5]) {
                        const c = nv.frac2canvasPos(nv.vox2frac([x, y, centre[2]]));
                        xs.push(c[0] / dpr);
                        ys.push(c[1] / dpr);
                    }
                const a = nv.frac2canvasPos(nv.vox2frac([0, 0, centre[2]]));
                const b = nv.frac2canvasPos(nv.vox2frac([1, 0, centre[2]]));
                return { box: [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)],
                         voxel: Math.abs(b[0] - a[0]) / dpr };
            }""",
            [lo, hi, centre],
        )

    geo = canvas_box()
    out["tumour_box_px"] = geo["box"]
    margin = geo["voxel"] + 2
    canvas = page.locator('section.a2f-viewer canvas')
    shot = canvas.screenshot()
    inside, outside = colour_counts(shot, geo["box"], margin)
    out["default"] = {"inside": inside, "outside": outside}
    if sum(inside.values()) == 0:
        fail(f"no overlay colour where the tumour is ({geo['box']})")
    if outside != 0:
        fail(f"{outside} overlay-coloured pixels far from the tumour")

    sw = spec.get("switch")
    if sw:
        before = label_name()
        select(page, "subset", str(sw["subset"]))
        canvas_box()
        after = label_name()
        out["volumes"] = [before, after]
        if before == after:
            fail(f"switching the subset kept the volumes {before}")
        inside2, outside2 = colour_counts(canvas.screenshot(), geo["box"], margin)
        out["switched"] = {"inside": inside2, "outside": outside2}
        if inside[sw["gone"]] == 0 or inside2[sw["gone"]] != 0:
            fail(f"switching the subset did not remove the {sw['gone']} overlay: {inside} -> {inside2}")
        if outside2 != 0:
            fail(f"{outside2} overlay-coloured pixels far from the tumour after switching")
        scores = page.inner_text("section.a2f-viewer .a2f-scores")
        out["scores_text"] = scores


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=chromium,
        args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    errors, requests = [], []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    url = "file://" + page_path
    page.goto(url)
    page.wait_for_selector("section.a2f-viewer[data-ready='1'], section.a2f-viewer[data-error]", timeout=60000)
    err = page.get_attribute("section.a2f-viewer", "data-error")
    if err:
        fail(f"the viewer failed: {err}")
    out = {}
    out["requests"] = requests
    if requests != [url]:
        fail(f"requests other than the page itself: {requests}")
    label_name = lambda: page.evaluate(
        "() => document.querySelector('section.a2f-viewer').a2fViewer.nv.volumes.map(v => v.name)"
    )
    all_dims = lambda: page.evaluate(
        "() => document.querySelector('section.a2f-viewer').a2fViewer.nv.volumes"
        ".map(v => Array.from(v.hdr.dims).slice(1, 4))"
    )
    out["dims"] = all_dims()
    for d in out["dims"]:
        if d != spec["dims"]:
            fail(f"a volume has dims {d}, expected {spec['dims']}")

    out["selections"] = []
    for sel in spec.get("selections", []):
        select(page, "method", str(sel["method"]))
        select(page, "subset", str(sel["subset"]))
        select(page, "attention", str(sel["attention"]))
        names = label_name()
        caption = page.inner_text("section.a2f-viewer .a2f-scores caption")
        out["selections"].append({"volumes": names, "caption": caption})
        if names != sel["volumes"]:
            fail(f"after selecting {sel}: volumes {names}")
        for d in all_dims():
            if d != spec["dims"]:
                fail(f"after selecting {sel}: a volume has dims {d}, expected {spec['dims']}")
        for text in sel["caption"]:
            if text not in caption:
                fail(f"after selecting {sel}: the scores' caption {caption!r} lacks {text!r}")

    if spec["tumour"] is not None:
        tumour_checks(page, out, label_name)

    # Every other view draws without error.
    for view in ["multiplanar", "render", "coronal", "sagittal"]:
        select(page, "view", view)
    if errors:
        fail(f"console errors: {errors}")
    out["errors"] = errors
    browser.close()
print(json.dumps(out))
