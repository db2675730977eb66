"""Shared streamlit helpers of the studio (the library, evoroute/, never imports streamlit)."""
