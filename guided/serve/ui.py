"""The web UI (Gradio Blocks, mounted at / by `app.create_app`): one tab per way of stylizing, and
one result panel they share (progress, step preview, loss curves, before/after, download, send-to).

Every button goes through `ui_jobs`, i.e. the server's own queue and the REST API's option checks.
"""
from __future__ import annotations

import random

import gradio as gr

from guided.config import GuidanceConfig
from guided.constants import GUIDANCE_TERMS, MODES, SCHEDULER_NAMES
from guided.errors import GuidedError, one_line
from guided.serve import ui_jobs
from guided.stylize import DEFAULTS

#: Gradio's Soft theme with fonts that ship with Gradio or the system: the page loads nothing from
#: another host (the default Google fonts would).
THEME = gr.themes.Soft(primary_hue="indigo", neutral_hue="slate",
                       font=[gr.themes.LocalFont("Montserrat"), "ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=[gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "monospace"])
UI_CSS = """
.g-header h1 {margin-bottom: 0}
.g-header p {margin-top: 2px; opacity: .75}
.g-notice {background: #fff7ed; border: 1px solid #fdba74; border-radius: 8px; padding: 6px 12px; color: #9a3412}
.g-progress {height: 10px; border-radius: 5px; background: var(--neutral-200); overflow: hidden}
.g-bar {height: 100%; background: var(--primary-500); transition: width .25s}
.g-failed .g-bar, .g-cancelled .g-bar {background: var(--neutral-400)}
.g-status {font-size: .9em; margin-top: 4px; opacity: .8}
.g-error {color: #b91c1c; font-weight: 600}
.g-download {display: inline-block; padding: 8px 14px; border-radius: 8px; background: var(--primary-600);
             color: white !important; text-decoration: none; font-weight: 600}
"""
TABS = ("Text prompt", "Painting + prompt", "Classic", "Fast", "Compare")
_G = GuidanceConfig()


def _photo(elem_id: str) -> gr.Image:
    return gr.Image(label="Photo", type="filepath", sources=["upload", "clipboard"], height=260, elem_id=elem_id)


def _paintings(label: str = "Painting(s)") -> gr.File:
    return gr.File(label=label, file_count="multiple", file_types=["image"], type="filepath", height=120)


def _weights(text: str) -> list[float] | None:
    from guided.validate import parse_floats

    return parse_floats(text, "style_weights") if text and text.strip() else None


def build_ui(state) -> gr.Blocks:
    from guided.gatys.presets import PRESETS
    from guided.guidance.presets import list_presets

    presets = [p.name for p in list_presets()]
    nets_reason = state.nets.why_unavailable()
    with gr.Blocks(title="guided", analytics_enabled=False) as ui:
        job_id = gr.State(None)
        with gr.Row(elem_classes="g-header"):
            gr.Markdown("# guided\nStylize a photo: a text prompt, a painting, the classic method or a fast network.")
        if state.config.tiny:
            gr.HTML('<div class="g-notice">Tiny <b>random</b> models (<code>--tiny</code>): a smoke test of the '
                    "install. Results are noise, not stylizations.</div>")
        with gr.Tabs() as tabs:
            with gr.Tab(TABS[0], id=0):
                with gr.Row():
                    t_photo = _photo("t-photo")
                    with gr.Column():
                        t_preset = gr.Dropdown(["(none)", *presets], value=presets[0] if presets else "(none)",
                                               label="Style preset")
                        t_prompt = gr.Textbox(label="Prompt (empty: the preset's)", lines=2,
                                              placeholder="an ink wash painting of a mountain village")
                        t_run = gr.Button("Stylize", variant="primary")
            with gr.Tab(TABS[1], id=1):
                with gr.Row():
                    p_photo = _photo("p-photo")
                    with gr.Column():
                        p_paintings = _paintings()
                        p_blend = gr.Textbox(label="Blend weights (one per painting, e.g. 0.7,0.3)", value="")
                        p_prompt = gr.Textbox(label="Prompt", lines=2)
                with gr.Accordion("Guidance weights and sampling", open=True):
                    with gr.Row():
                        p_w = {term: gr.Slider(0, 5, value=getattr(_G, term), step=0.05, label=term)
                               for term in GUIDANCE_TERMS}
                    with gr.Row():
                        p_mode = gr.Radio(list(MODES), value=_G.mode, label="Mode")
                        p_steps = gr.Slider(1, 100, value=DEFAULTS.steps, step=1, label="Steps")
                        p_strength = gr.Slider(0.05, 1, value=DEFAULTS.strength, step=0.05, label="Strength")
                        p_sched = gr.Dropdown(list(SCHEDULER_NAMES), value=DEFAULTS.scheduler, label="Scheduler")
                    with gr.Row():
                        p_seed = gr.Number(value=DEFAULTS.seed, precision=0, label="Seed", minimum=0)
                        p_dice = gr.Button("Randomize seed", size="sm")
                p_run = gr.Button("Stylize", variant="primary")
            with gr.Tab(TABS[2], id=2):
                with gr.Row():
                    c_photo = _photo("c-photo")
                    with gr.Column():
                        c_paintings = _paintings()
                        c_preset = gr.Dropdown(list(PRESETS), value="d2l-fast", label="Classic preset",
                                               info="; ".join(f"{n}: {p.iterations} iterations"
                                                              for n, p in PRESETS.items()))
                        c_iters = gr.Number(value=None, precision=0, minimum=0, label="Iterations (empty: preset)")
                        c_run = gr.Button("Paint (classic)", variant="primary")
            with gr.Tab(TABS[3], id=3):
                if nets_reason:
                    gr.Markdown(f"**Fast networks are not available:** {nets_reason}")
                with gr.Row():
                    f_photo = _photo("f-photo")
                    with gr.Column():
                        f_net = gr.Dropdown(state.nets.names(), label="Network (from --nets)",
                                            interactive=nets_reason is None)
                        f_run = gr.Button("Stylize (fast)", variant="primary", interactive=nets_reason is None)
            with gr.Tab(TABS[4], id=4):
                with gr.Row():
                    m_photo = _photo("m-photo")
                    with gr.Column():
                        m_paintings = _paintings("Painting")
                        m_prompt = gr.Textbox(label="Prompt", lines=2)
                        m_run = gr.Button("Compare classic, img2img and guided", variant="primary")
                m_grid = gr.Image(label="Report: classic · img2img · guided", type="pil", interactive=False)
                m_table = gr.Dataframe(headers=["output", "metrics"], label="Metrics", interactive=False, wrap=True)

        with gr.Group():
            status = gr.HTML(ui_jobs.progress_html("idle"), elem_id="g-status")
            error = gr.Markdown("", elem_classes="g-error", elem_id="g-error")
        with gr.Row(equal_height=True):
            with gr.Column(scale=1):
                preview = gr.Image(label="Step preview", type="pil", interactive=False, height=300)
                plot = gr.Image(ui_jobs.loss_curves([]), label="Loss curves", type="pil", interactive=False,
                                height=300, elem_id="g-curves")
            with gr.Column(scale=2):
                result = gr.ImageSlider(label="Before / after", type="pil", interactive=False, height=420,
                                        elem_id="g-result")
                info = gr.Markdown("", elem_id="g-info")
                with gr.Row():
                    download = gr.HTML("", elem_id="g-download")
                    cancel = gr.Button("Cancel", variant="stop", size="sm")
                with gr.Row():
                    send_to = gr.Dropdown(list(TABS[:4]), value=TABS[2], label="Send the result to", scale=2)
                    send = gr.Button("Send", size="sm", scale=1)

        outputs = [status, preview, plot, result, info, download, error, job_id, m_table, m_grid]

        def render(update: ui_jobs.Update) -> dict:
            values = {status: update.status, job_id: update.job_id,
                      error: f"⚠ {update.error}" if update.error else ""}
            for component, value in ((preview, update.preview), (plot, update.losses), (result, update.result),
                                     (info, update.info), (download, update.download), (m_table, update.rows),
                                     (m_grid, update.report)):
                if value is not None:
                    values[component] = value
            return values

        def runner(method: str, make):
            def run(*args):
                yield {status: ui_jobs.progress_html("queued"), error: "", info: "", download: "", result: None,
                       preview: None}
                try:
                    photo, styles, options = make(*args)
                    new_id = ui_jobs.start_job(state, method, photo, styles, options)
                except GuidedError as exc:
                    yield render(ui_jobs.Update(ui_jobs.progress_html("failed"), error=one_line(exc)))
                    return
                for update in ui_jobs.follow(state, new_id):
                    yield render(update)
            return run

        limit = state.config.queue + 1  # our queue bounds the work; the UI may follow that many jobs
        text = runner("stylize", lambda photo, preset, prompt: (photo, [], {
            "preset": None if preset in (None, "(none)") else preset, "prompt": prompt or None}))
        t_run.click(text, [t_photo, t_preset, t_prompt], outputs, concurrency_limit=limit)

        def painting(photo, paintings, blend, prompt, *rest):
            *weights, mode, steps, strength, scheduler, seed = rest
            guidance = dict(zip(p_w, weights), mode=mode)
            return photo, paintings, {"prompt": prompt or None, "style_weights": _weights(blend), "guidance": guidance,
                                      "steps": int(steps), "strength": float(strength), "scheduler": scheduler,
                                      "seed": int(seed) if seed is not None else None}
        p_run.click(runner("stylize", painting),
                    [p_photo, p_paintings, p_blend, p_prompt, *p_w.values(), p_mode, p_steps, p_strength, p_sched,
                     p_seed], outputs, concurrency_limit=limit)
        p_dice.click(lambda: random.randint(0, 2 ** 31 - 1), None, p_seed)
        classic = runner("gatys", lambda photo, paintings, preset, iters: (photo, paintings, {
            "preset": preset, "iterations": int(iters) if iters is not None else None}))
        c_run.click(classic, [c_photo, c_paintings, c_preset, c_iters], outputs, concurrency_limit=limit)
        fast = runner("fast", lambda photo, net: (photo, [], {"net": net}))
        f_run.click(fast, [f_photo, f_net], outputs, concurrency_limit=limit)
        compare = runner("compare", lambda photo, paintings, prompt: (photo, paintings, {"prompt": prompt or None}))
        m_run.click(compare, [m_photo, m_paintings, m_prompt], outputs, concurrency_limit=limit)
        cancel.click(lambda jid: ui_jobs.cancel(state, jid), job_id, info)

        photos = [t_photo, p_photo, c_photo, f_photo]

        def send_result(images, target):
            if not images or images[1] is None:
                return [gr.update() for _ in photos] + [gr.update(), "Nothing to send yet"]
            index = TABS.index(target)
            return ([images[1] if i == index else gr.update() for i in range(len(photos))]
                    + [gr.Tabs(selected=index), ""])
        send.click(send_result, [result, send_to], [*photos, tabs, error])
    return ui
