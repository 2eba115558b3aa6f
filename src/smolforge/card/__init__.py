"""The model card: gather every variable from the run (context), render it (render), validate.

Import cost matters here (`smolforge card` must stay well under a second), so nothing in this
package imports torch or transformers.
"""
