"""Evaluation: does the fine-tune beat its base, measured the same way?"""
