// a2fseg case viewer: one NiiVue instance (global `niivue`, the bundle inlined before this
// script) per <section class="a2f-viewer">. Each section carries its case as JSON
// (script.a2f-data): images, ground truth, per method its predictions (one per subset) and
// attention maps, each a base64 gzip NIfTI cropped to the brain box (images and attention
// maps predictively coded); a volume is decoded the first time it is shown. When a section
// is ready its attribute data-ready is "1" (or data-error holds the message) and
// section.a2fViewer = { nv, show }.
"use strict";
(function () {
  const SLICE = { axial: 0, coronal: 1, sagittal: 2, multiplanar: 3, render: 4 };

  function base64Bytes(b64) {
    const s = atob(b64);
    const bytes = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
    return bytes;
  }

  // Undoes the predictive coding (src/report/viewer_volumes.rs, predictive_residuals) of
  // the uint8 voxels at the end of a NIfTI file, in place: each voxel plus the mean
  // (rounded down) of its decoded neighbours x-1, y-1, z-1 (0 outside), modulo 256.
  function unpredict(nii, [nx, ny, nz]) {
    const v = nii.subarray(nii.length - nx * ny * nz);
    const sxy = nx * ny;
    let i = 0;
    for (let z = 0; z < nz; z++)
      for (let y = 0; y < ny; y++)
        for (let x = 0; x < nx; x++, i++) {
          const sum = (x > 0 ? v[i - 1] : 0) + (y > 0 ? v[i - nx] : 0) + (z > 0 ? v[i - sxy] : 0);
          v[i] = (v[i] + Math.floor(sum / 3)) & 255;
        }
  }

  // An embedded volume ({nii: base64 gzip NIfTI, coding}) as NIfTI bytes and a file name
  // NiiVue reads it by.
  async function decode(vol, dims) {
    const gz = base64Bytes(vol.nii);
    if (vol.coding !== "predictive") return [gz.buffer, ".nii.gz"];
    const stream = new Blob([gz]).stream().pipeThrough(new DecompressionStream("gzip"));
    const nii = new Uint8Array(await new Response(stream).arrayBuffer());
    unpredict(nii, dims);
    return [nii.buffer, ".nii"];
  }

  function fillSelect(select, labels, selected) {
    select.replaceChildren(...labels.map((label, i) => new Option(label, String(i))));
    select.value = String(selected);
  }

  function scoresTable(table, seg, methodLabel) {
    const title = (methodLabel ? methodLabel + ", " : "") + seg.label;
    if (!seg.scores) {
      table.innerHTML = "<caption></caption><tr><td>no ground truth: no scores</td></tr>";
      table.caption.textContent = title;
      return;
    }
    const rows = seg.scores.map(
      (s) => `<tr><th>${s.region}</th><td>${s.dice.toFixed(2)}</td><td>${s.hd95.toFixed(2)}</td></tr>`
    );
    table.innerHTML =
      "<caption></caption><tr><th>region</th><th>Dice %</th><th>HD95 mm</th></tr>" + rows.join("");
    table.caption.textContent = title;
  }

  async function setup(section) {
    const data = JSON.parse(section.querySelector("script.a2f-data").textContent);
    const control = (name) => section.querySelector(`[data-control="${name}"]`);
    const nv = new niivue.Niivue({
      backColor: [0, 0, 0, 1],
      crosshairColor: [1, 0.85, 0, 1],
      isColorbar: false,
      dragAndDropEnabled: false,
      loadingText: "",
      multiplanarShowRender: 1,
      logLevel: "error",
    });
    await nv.attachToCanvas(section.querySelector("canvas"));
    const cache = new Map();
    async function volume(key, vol, colormap, isLabel) {
      if (!cache.has(key)) {
        const [bytes, ext] = await decode(vol, data.dims);
        const img = await niivue.NVImage.new(bytes, key + ext, colormap, 1.0);
        if (isLabel) img.setColormapLabel(data.lut);
        cache.set(key, img);
      }
      return cache.get(key);
    }

    const imageLabels = data.images.map((i) => i.label);
    fillSelect(control("image"), imageLabels, Math.max(0, imageLabels.indexOf("FLAIR")));
    fillSelect(control("method"), data.methods.map((m) => m.label), 0);
    section.querySelector(".a2f-method").hidden = data.methods.length < 2;
    const overlays = [];
    if (data.methods.length > 0) overlays.push(["prediction", "prediction"]);
    if (data.truth) overlays.push(["truth", "ground truth"]);
    overlays.push(["none", "none"]);
    control("overlay").replaceChildren(...overlays.map(([v, l]) => new Option(l, v)));

    function methodChanged() {
      const m = data.methods[Number(control("method").value)];
      const segs = m ? m.segmentations : [];
      // The full subset (last in the paper's order) first.
      fillSelect(control("subset"), segs.map((s) => s.label), Math.max(0, segs.length - 1));
      const attention = m ? m.attention : [];
      fillSelect(control("attention"), ["none", ...attention.map((a) => a.label)], 0);
      section.querySelector(".a2f-note").textContent = m ? m.attention_note : "";
    }

    async function show() {
      const mi = Number(control("method").value);
      const method = data.methods[mi];
      const si = Number(control("subset").value);
      const seg = method ? method.segmentations[si] : undefined;
      const ii = Number(control("image").value);
      const want = [await volume(`image${ii}`, data.images[ii], "gray", false)];
      const overlay = control("overlay").value;
      if (overlay === "prediction" && seg) {
        want.push(await volume(`method${mi}-seg${si}`, seg, "", true));
      } else if (overlay === "truth" && data.truth) {
        want.push(await volume("truth", data.truth, "", true));
      }
      const ai = Number(control("attention").value) - 1;
      if (method && ai >= 0) {
        want.push(await volume(`method${mi}-attention${ai}`, method.attention[ai], "hot", false));
      }
      while (nv.volumes.length > 0) nv.removeVolume(nv.volumes[0]);
      for (const v of want) nv.addVolume(v);
      const opacity = Number(control("opacity").value);
      for (let i = 1; i < want.length; i++) nv.setOpacity(i, opacity);
      nv.setSliceType(SLICE[control("view").value]);
      if (seg) scoresTable(section.querySelector(".a2f-scores"), seg, method.label);
    }

    methodChanged();
    control("method").addEventListener("change", () => {
      methodChanged();
      show();
    });
    for (const name of ["image", "overlay", "subset", "attention", "opacity", "view"]) {
      control(name).addEventListener(name === "opacity" ? "input" : "change", show);
    }
    await show();
    section.a2fViewer = { nv, show };
    section.dataset.ready = "1";
  }

  for (const section of document.querySelectorAll("section.a2f-viewer")) {
    setup(section).catch((e) => {
      section.dataset.error = String(e);
      console.error("a2fseg viewer:", e);
    });
  }
})();
