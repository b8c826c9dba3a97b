"""The maintainers' dashboard (`tqa dashboard`): a Streamlit page over the functions in `data`."""
