"""The Streamlit dashboard: dataset, evaluation history, online use and the review queue (`tqa dashboard`)."""

from __future__ import annotations

import streamlit as st

from ml.errors import UserError
from ml.feedback.store import FeedbackStore
from ml.settings import Settings
from ops.dashboard.data import dataset_summary, eval_history, online_use

settings = Settings()
st.set_page_config(page_title="Transformers QA dashboard", layout="wide")
st.title("Transformers QA")
use_tab, review_tab, data_tab, eval_tab = st.tabs(["Online use", "Review queue", "Dataset", "Evaluation"])

with use_tab:
    use = online_use(settings)
    cols = st.columns(5)
    cols[0].metric("Questions", use["questions"])
    cols[1].metric("Abstention rate", f"{use['abstention_rate']:.0%}")
    cols[2].metric("p95 latency", f"{use['p95_ms']:.0f} ms")
    cols[3].metric("Thumbs up", use["up"])
    cols[4].metric("Thumbs down", use["down"])
    st.subheader("Rated down")
    if use["worst"]:
        st.dataframe(use["worst"], hide_index=True)
    else:
        st.caption("No answer has been rated down.")

with review_tab:
    with FeedbackStore(settings.feedback_db) as store:
        queue = store.review_queue()
    if not queue:
        st.caption("No corrections wait for review.")
    for item in queue:
        qid = item["query_id"]
        with st.container(border=True):
            st.text(f"Question: {item['question']}")
            st.text(f"Answer given: {item['answer']['answer'][:500]}")
            if item["comment"]:
                st.text(f"Comment: {item['comment']}")
            edited = st.text_area("Correction", value=item["correction"], key=f"edit-{qid}")
            left, right = st.columns(2)
            if left.button("Approve", key=f"approve-{qid}"):
                with FeedbackStore(settings.feedback_db) as store:
                    store.decide(qid, "approved", edited)
                st.rerun()
            if right.button("Reject", key=f"reject-{qid}"):
                with FeedbackStore(settings.feedback_db) as store:
                    store.decide(qid, "rejected")
                st.rerun()

with data_tab:
    summary = dataset_summary(settings.data_dir / "dataset")
    if summary is None:
        st.caption("No dataset yet: run `tqa dataset build`.")
    else:
        st.caption(f"Dataset {summary['hash'][:16]} built {summary['built_at']}: {summary['records']} pairs")
        cols = st.columns(3)
        cols[0].bar_chart(summary["by_category"])
        cols[1].bar_chart(summary["by_source_kind"])
        cols[2].bar_chart(summary["by_split"])
        category = st.selectbox("Category", ["all", *summary["by_category"]])
        rows = [r for r in summary["rows"] if category == "all" or r["category"] == category]
        st.dataframe(rows, hide_index=True)

with eval_tab:
    try:
        runs = eval_history(settings)
    except UserError as exc:
        st.warning(str(exc))
        runs = []
    if runs:
        metrics = sorted({k for r in runs for k in r if k not in ("run_id", "start_time", "name")})
        chosen = st.multiselect("Metrics", metrics, default=metrics[:3])
        st.line_chart([{k: r.get(k) for k in chosen} for r in runs])
        st.dataframe(runs, hide_index=True)
    else:
        st.caption("No evaluation runs in MLflow yet: run `tqa eval run`.")
