"""`smolforge ui`: the pipeline in a local web app (Gradio). Every field, default, bound and message comes from
the schema's declarations and the functions `smolforge run` uses; runs start as their own `smolforge run`
processes, so the app never trains and closing the browser stops nothing."""
